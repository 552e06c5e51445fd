"""Suite-wide set-up: Triton kernels run on the CPU interpreter when no GPU is present."""

import os

import torch

if not torch.cuda.is_available():
    # Must be set before attnzoo's kernels are decorated by triton.jit (at import time).
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

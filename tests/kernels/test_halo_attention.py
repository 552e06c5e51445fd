"""Halo attention beyond the kernel battery: dispatch and named shape errors."""

import pytest
import torch

from attnzoo.kernels import halo_attention, use_kernels
from attnzoo.kernels.halo_attention import halo_attention_reference
from attnzoo.kernels.halo_attention.spec import make_problem
from tests.helpers.kernel_check import DEVICE


def test_dispatch_uses_kernel_only_when_asked():
    tensors, meta = make_problem(0)
    tensors = [t.to(DEVICE) for t in tensors]
    with use_kernels("torch"):
        ref = halo_attention(*tensors, *meta)
    with use_kernels("triton"):
        out = halo_attention(*tensors, *meta)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=2e-5)


def test_bad_shapes_are_named():
    tensors, meta = make_problem(1)
    q, k, v, qrh, qrw = tensors
    with pytest.raises(ValueError, match="not a multiple of block_q"):
        halo_attention_reference(q[:, :-1], k, v, qrh[:, :-1], qrw[:, :-1], *meta)
    with pytest.raises(ValueError, match="k/v grid"):
        halo_attention_reference(q, k[:, :-1], v, qrh, qrw, *meta)
    with pytest.raises(ValueError, match="relative logits"):
        halo_attention_reference(q, k, v, qrh[..., :-1], qrw, *meta)

"""Suite-wide set-up: Triton kernels run on the CPU interpreter when no GPU is present, the Hugging Face
Hub is offline, and fixtures give a test its own weight caches."""

import os
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    # Must be set before attnzoo's kernels are decorated by triton.jit (at import time).
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty, offline HF cache (and torch.hub folder): env vars for subprocesses, module constants
    for this process.

    huggingface_hub reads HF_HOME / HF_HUB_CACHE / HF_HUB_OFFLINE into ``huggingface_hub.constants``
    once, at import; ``hf_hub_download`` then reads ``constants.HF_HUB_CACHE`` and
    ``constants.is_offline_mode()`` on every call, so patching those attributes is enough. Direct
    downloads (attnzoo.weights.fetch) are cached under ``torch.hub.get_dir()``, moved here too.
    """
    import huggingface_hub.constants

    home = tmp_path / "hf_home"
    cache = home / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HOME", str(home))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "torch_home" / "hub"))
    assert huggingface_hub.constants.is_offline_mode()
    return cache

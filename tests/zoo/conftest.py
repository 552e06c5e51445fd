"""Fixtures for the zoo tests: an offline Hugging Face cache that the test owns."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub
import huggingface_hub.constants
import pytest


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty, offline HF cache: env vars for subprocesses, module constants for this process.

    huggingface_hub reads HF_HOME / HF_HUB_CACHE / HF_HUB_OFFLINE into ``huggingface_hub.constants``
    once, at import; ``hf_hub_download`` then reads ``constants.HF_HUB_CACHE`` and
    ``constants.is_offline_mode()`` on every call, so patching those attributes is enough.
    """
    home = tmp_path / "hf_home"
    cache = home / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HOME", str(home))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert huggingface_hub.constants.is_offline_mode()
    return cache

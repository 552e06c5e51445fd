"""Hub first, official fallback, offline and failing remotes: where ``pretrained=True`` gets its weights.

The remote is a local HTTP server (tests/weights/conftest.py) answering as the Hub and a release host
would; caches are per test. Nothing leaves the machine.
"""

from __future__ import annotations

import hashlib
import io
import time
from pathlib import Path

import pytest
import safetensors.torch
import timm
import torch

from attnzoo.backbones import family_of
from attnzoo.weights import PretrainedUnavailableError, Source, Weights, fetch_weights
from attnzoo.weights.fetch import url_cache_path
from attnzoo.weights.manifest import hub_repo_id
from tests.weights.conftest import COMMIT

MODEL = "biformer_tiny"  # re-hosted by attnzoo (MIT), official source: a release URL


def random_state_dict(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return {k: v.clone() for k, v in timm.create_model(MODEL).state_dict().items()}


def torch_bytes(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def assert_weights(model: torch.nn.Module, expected: dict[str, torch.Tensor]) -> None:
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in expected.items())


def manifest_record() -> Weights:
    weights = family_of(MODEL).weights_for(MODEL)
    assert weights is not None and weights.official_url is not None
    return weights


def put_in_hub_cache(cache: Path, repo_id: str, filename: str, data: bytes) -> None:
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "snapshots" / COMMIT).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    (repo / "snapshots" / COMMIT / filename).write_bytes(data)


def test_hub_copy_comes_first_and_works_offline(hub_cache: Path) -> None:
    sd = random_state_dict(1)
    put_in_hub_cache(hub_cache, hub_repo_id(MODEL, "in1k"), "model.safetensors", safetensors.torch.save(sd))
    # an official file in the URL cache too: the Hub copy must win
    official = url_cache_path(manifest_record(), manifest_record().official_url)
    official.parent.mkdir(parents=True)
    official.write_bytes(torch_bytes({"model": random_state_dict(2)}))

    model = timm.create_model(MODEL, pretrained=True)
    assert_weights(model, sd)
    assert "state_dict" not in model.pretrained_cfg, "the loaded tensors must not stay in the cfg"
    assert model.pretrained_cfg["file"].endswith("model.safetensors")


def test_official_url_fallback_downloads_once_then_uses_the_cache(fake_remote) -> None:
    """The attnzoo repo is missing on the Hub: the official release URL is downloaded, cached under the
    model's name (the link's own name says nothing), and loaded through the converter; a second
    create_model reads the cache without asking the server."""
    weights = manifest_record()
    sd = random_state_dict(3)
    url = fake_remote.serve_file("/release/root/content", torch_bytes({"model": sd, "epoch": 300}))
    record = Weights(MODEL, "in1k", (Source(url=url),))
    family = family_of(MODEL)
    path, candidate = fetch_weights(record, rehosted=family.rehosts(weights), progress=False)
    assert path == url_cache_path(record, record.sources[0]) and path.name == f"{MODEL}.in1k.pth"
    assert not candidate.converted
    hub_path = f"/{hub_repo_id(MODEL, 'in1k')}/resolve/main/model.safetensors"
    assert ("HEAD", hub_path) in fake_remote.requests, "the attnzoo Hub copy is tried first"

    fake_remote.fail_everything()
    seen = len(fake_remote.requests)
    again, _ = fetch_weights(record, rehosted=False, progress=False)
    assert again == path and len(fake_remote.requests) == seen


def test_hub_copy_downloaded_from_the_remote(fake_remote) -> None:
    sd = random_state_dict(4)
    fake_remote.serve_hub_file(hub_repo_id(MODEL, "in1k"), "model.safetensors", safetensors.torch.save(sd))
    model = timm.create_model(MODEL, pretrained=True, num_classes=7)  # head re-initialised, the rest loaded
    assert model.num_classes == 7
    assert_weights(model, {k: v for k, v in sd.items() if not k.startswith("head.")})
    assert ("GET", f"/{hub_repo_id(MODEL, 'in1k')}/resolve/main/model.safetensors") in fake_remote.requests


def test_offline_without_cache_fails_fast_naming_every_source(hub_cache: Path) -> None:
    start = time.monotonic()
    with pytest.raises(PretrainedUnavailableError) as info:
        timm.create_model(MODEL, pretrained=True)
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert f"{MODEL}.in1k" in message and "HF_HUB_OFFLINE" in message
    assert f"hf-hub:{hub_repo_id(MODEL, 'in1k')}" in message
    assert manifest_record().official_url.url in message
    assert "pretrained_cfg_overlay=dict(file=" in message


def test_failing_remote_fails_fast(fake_remote) -> None:
    fake_remote.fail_everything(500)
    url = fake_remote.url("/release/file.pth")
    record = Weights(MODEL, "in1k", (Source(url=url),))
    start = time.monotonic()
    with pytest.raises(PretrainedUnavailableError) as info:
        fetch_weights(record, rehosted=True, progress=False)
    assert time.monotonic() - start < 10, "no retry loop on a failing server"
    message = str(info.value)
    assert "HTTP 500" in message and "500" in message.splitlines()[1]
    assert not url_cache_path(record, record.sources[0]).exists()


def test_error_page_and_wrong_hash_are_refused_and_never_cached(fake_remote) -> None:
    html = fake_remote.serve_file("/share/file", b"<!DOCTYPE html><html>Sign in</html>")
    record = Weights(MODEL, "in1k", (Source(url=html),))
    with pytest.raises(PretrainedUnavailableError, match="HTML page"):
        fetch_weights(record, rehosted=False, progress=False)
    assert not url_cache_path(record, record.sources[0]).exists()
    assert not list(url_cache_path(record, record.sources[0]).parent.glob("*.partial"))

    url = fake_remote.serve_file("/rel/x.pth", torch_bytes({"a": torch.ones(1)}))
    record = Weights(MODEL, "in1k", (Source(url=url, sha256="0" * 64),))
    with pytest.raises(PretrainedUnavailableError, match="SHA-256"):
        fetch_weights(record, rehosted=False, progress=False)
    assert not url_cache_path(record, record.sources[0]).exists()


def test_a_bad_cached_file_is_fetched_again(fake_remote) -> None:
    good = torch_bytes({"a": torch.ones(1)})
    url = fake_remote.serve_file("/rel/x.pth", good)
    record = Weights(MODEL, "in1k", (Source(url=url),))
    cached = url_cache_path(record, record.sources[0])
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"<html>an error page cached by an older download</html>")
    path, _ = fetch_weights(record, rehosted=False, progress=False)
    assert path == cached and cached.read_bytes() == good


def test_a_model_without_released_weights_says_so() -> None:
    with pytest.raises(PretrainedUnavailableError, match="no released pretrained weights"):
        timm.create_model("infvit_pure_4l", pretrained=True)


def test_a_source_of_the_callers_own_is_used_as_given(tmp_path: Path, hub_cache: Path) -> None:
    sd = random_state_dict(5)
    path = tmp_path / "mine.pth"
    torch.save({"model": sd}, path)
    model = timm.create_model(MODEL, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    assert_weights(model, sd)


def test_a_damaged_hub_blob_is_not_loaded(hub_cache: Path) -> None:
    """A cached LFS file whose content no longer matches its SHA-256 name is removed, not loaded."""
    data = safetensors.torch.save(random_state_dict(6))
    repo = hub_cache / ("models--" + hub_repo_id(MODEL, "in1k").replace("/", "--"))
    blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True)
    blob.write_bytes(data[:-10] + b"0123456789")  # flipped bytes at the end
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").symlink_to(blob)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    with pytest.raises(PretrainedUnavailableError, match="not in the Hugging Face cache"):
        fetch_weights(manifest_record(), rehosted=True, progress=False)
    assert not blob.exists() and not (snapshot / "model.safetensors").exists()
    blob.write_bytes(data)  # intact: used
    (snapshot / "model.safetensors").symlink_to(blob)
    path, candidate = fetch_weights(manifest_record(), rehosted=True, progress=False)
    assert candidate.converted and path == snapshot / "model.safetensors"


def test_a_download_that_changed_in_the_cache_is_fetched_again(fake_remote) -> None:
    """The SHA-256 recorded at download catches flipped bytes later (torch files have no checksum)."""
    good = torch_bytes({"a": torch.arange(1000.0)})
    url = fake_remote.serve_file("/rel/x.pth", good)
    record = Weights(MODEL, "in1k", (Source(url=url),))
    path, _ = fetch_weights(record, rehosted=False, progress=False)
    assert path.with_name(path.name + ".sha256").read_text().strip() == hashlib.sha256(good).hexdigest()
    damaged = bytearray(good)
    damaged[-100] ^= 0xFF
    path.write_bytes(bytes(damaged))
    again, _ = fetch_weights(record, rehosted=False, progress=False)
    assert again == path and path.read_bytes() == good
    path.write_bytes(bytes(damaged))
    fake_remote.fail_everything()
    with pytest.raises(PretrainedUnavailableError, match="HTTP 500"):
        fetch_weights(record, rehosted=False, progress=False)
    assert not path.exists(), "a changed file is never left to be loaded"

"""Pretrained loading through timm: local files, an offline Hugging Face Hub cache, bad checkpoints.

The checkpoints are written by the tests: random weights of the *official* model (timm's own
implementation, in the official key naming), so loading exercises ``convert_official`` as the
``pretrained_filter_fn`` exactly as a real download would. Nothing touches the network.
"""

from __future__ import annotations

import json
from pathlib import Path

import huggingface_hub
import huggingface_hub.constants
import pytest
import safetensors.torch
import timm
import torch

from attnzoo.weights import CheckpointError, read_state_dict
from attnzoo.zoo import GOLDEN_MODELS, convert_official

# attnzoo model -> the official (timm) model whose checkpoints it loads; add models here.
OFFICIAL = {ours: official for official, ours in GOLDEN_MODELS.items()}
MODELS = ["az_convit_tiny", "az_halonet26t"]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


class RunsCode:
    """A pickled object whose unpickling would call ``open(marker, 'w')``: reading must not run it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def official_state_dict(model_name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random, non-default weights in the official naming (BatchNorm stats included)."""
    torch.manual_seed(seed)
    official = timm.create_model(OFFICIAL[model_name])
    sd = official.state_dict()
    gen = torch.Generator().manual_seed(seed)
    for key, value in sd.items():
        if value.is_floating_point():
            noise = torch.randn(value.shape, generator=gen, dtype=value.dtype)
            sd[key] = (value + 0.1 * noise).abs() if key.endswith("running_var") else value + 0.1 * noise
    return {k: v.contiguous() for k, v in sd.items()}


def assert_loaded(model: torch.nn.Module, model_name: str, official_sd: dict[str, torch.Tensor]) -> None:
    """Every tensor the converted checkpoint provides is in ``model``, bit for bit."""
    expected = convert_official(model_name, official_sd, model)
    own = model.state_dict()
    assert expected, "converter returned nothing"
    for key, value in expected.items():
        assert key in own, key
        torch.testing.assert_close(own[key], value, rtol=0, atol=0, msg=key)
    # every parameter came from the checkpoint (buffers like index tables may be constructed)
    missing = [k for k, _ in model.named_parameters() if k not in expected]
    assert not missing, missing


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_pretrained_file(model_name: str, fmt: str, tmp_path: Path) -> None:
    sd = official_state_dict(model_name)
    path = tmp_path / f"official.{fmt}"
    if fmt == "pth":
        torch.save({"model": sd, "epoch": 300}, path)  # the official wrapped form
    else:
        safetensors.torch.save_file(sd, str(path))
    assert read_state_dict(path).keys() == sd.keys()

    model = timm.create_model(model_name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    assert_loaded(model, model_name, sd)


def test_read_state_dict_unwraps_and_runs_no_pickled_code(tmp_path: Path) -> None:
    sd = {"a.weight": torch.randn(2, 3), "b": torch.arange(4)}
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}, "step": 1}, tmp_path / "c.pth")
    loaded = read_state_dict(tmp_path / "c.pth")
    assert loaded.keys() == sd.keys()
    assert all(torch.equal(loaded[k], sd[k]) for k in sd)

    marker = tmp_path / "ran"
    torch.save({"model": sd, "extra": RunsCode(marker)}, tmp_path / "pickle.pth")
    loaded = read_state_dict(tmp_path / "pickle.pth")  # the tensors, and nothing called
    assert loaded.keys() == sd.keys() and not marker.exists()
    with pytest.raises(FileNotFoundError):
        read_state_dict(tmp_path / "missing.pth")
    (tmp_path / "w.npz").write_bytes(b"")
    with pytest.raises(CheckpointError, match="unsupported checkpoint format"):
        read_state_dict(tmp_path / "w.npz")


# ---------------------------------------------------------------- Hugging Face Hub, offline


def write_hub_repo(cache: Path, repo_id: str, model_name: str, state_dict: dict[str, torch.Tensor]) -> Path:
    """The layout hf_hub_download leaves behind: refs/main -> snapshots/<commit>/{config.json, weights}."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    # timm's config.json (see timm.models._hub.save_config_for_hf): architecture and class count at
    # the root, the pretrained cfg without its source fields nested under "pretrained_cfg".
    model = timm.create_model(model_name, pretrained=False)
    pretrained_cfg = {
        k: v
        for k, v in model.pretrained_cfg.items()
        if v is not None
        and k not in {"url", "file", "hf_hub_id", "hf_hub_filename", "source", "architecture"}
    }
    config = {
        "architecture": model_name,
        "num_classes": model.num_classes,
        "num_features": model.num_features,
        "pretrained_cfg": pretrained_cfg,
    }
    (snapshot / "config.json").write_text(json.dumps(config, indent=2))
    safetensors.torch.save_file(state_dict, str(snapshot / "model.safetensors"))
    return snapshot


@pytest.mark.parametrize("model_name", MODELS)
def test_hf_hub_model_id(model_name: str, hub_cache: Path) -> None:
    sd = official_state_dict(model_name, seed=1)
    write_hub_repo(hub_cache, "attnzoo-test/tiny-model", model_name, sd)
    model = timm.create_model("hf-hub:attnzoo-test/tiny-model", pretrained=True)
    assert model.pretrained_cfg["architecture"] == model_name
    assert model.pretrained_cfg["hf_hub_id"] == "attnzoo-test/tiny-model"
    assert_loaded(model, model_name, sd)


@pytest.mark.parametrize("model_name", MODELS)
def test_hf_hub_id_overlay(model_name: str, hub_cache: Path) -> None:
    sd = official_state_dict(model_name, seed=2)
    write_hub_repo(hub_cache, "attnzoo-test/other-repo", model_name, sd)
    model = timm.create_model(
        model_name, pretrained=True, pretrained_cfg_overlay=dict(hf_hub_id="attnzoo-test/other-repo")
    )
    assert_loaded(model, model_name, sd)


@pytest.mark.parametrize("model_name", MODELS)
def test_registered_hf_hub_id_loads_from_cache(model_name: str, hub_cache: Path) -> None:
    """``pretrained=True`` with no overlay: the registered cfg's own hf_hub_id, served from the cache."""
    hub_id = timm.create_model(model_name).pretrained_cfg.get("hf_hub_id")
    if not hub_id:
        pytest.skip(f"{model_name}'s default pretrained cfg has no hf_hub_id")
    sd = official_state_dict(model_name, seed=3)
    write_hub_repo(hub_cache, hub_id, model_name, sd)
    model = timm.create_model(model_name, pretrained=True)
    assert_loaded(model, model_name, sd)


def test_hf_hub_offline_missing_repo_fails(hub_cache: Path) -> None:
    """Offline and not cached: an error, not a silent random init and not a network call."""
    with pytest.raises(huggingface_hub.errors.LocalEntryNotFoundError):
        timm.create_model("hf-hub:attnzoo-test/not-cached", pretrained=True)


# ---------------------------------------------------------------- checkpoints that do not fit


@pytest.mark.parametrize("model_name", MODELS)
def test_wrong_shape_is_named(model_name: str, tmp_path: Path) -> None:
    sd = official_state_dict(model_name)
    # a tensor in the middle of the network (not the classifier, which timm may legitimately drop)
    key = next(k for k, v in sd.items() if v.ndim == 4 or (v.ndim == 2 and "head" not in k))
    sd[key] = torch.zeros(*(s + 1 for s in sd[key].shape))
    path = tmp_path / "bad_shape.pth"
    torch.save({"model": sd}, path)
    with pytest.raises((ValueError, RuntimeError, KeyError)) as info:
        timm.create_model(model_name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    message = str(info.value)
    assert key in message and ("shape" in message.lower() or "size" in message.lower()), message


@pytest.mark.parametrize("model_name", MODELS)
def test_other_models_checkpoint_is_rejected(model_name: str, tmp_path: Path) -> None:
    other = next(m for m in MODELS if m != model_name)
    path = tmp_path / "other.safetensors"
    safetensors.torch.save_file(official_state_dict(other), str(path))
    with pytest.raises((ValueError, RuntimeError, KeyError)) as info:
        timm.create_model(model_name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    message = str(info.value).lower()
    assert any(word in message for word in ("unexpected", "missing", "does not match", "unknown")), message

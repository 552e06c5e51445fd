"""ONNX export: the smallest variant of every family exports and onnxruntime reproduces torch, also with
pretrained weights and with a checkpoint's."""

from __future__ import annotations

import argparse

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import timm
import torch

from attnzoo.backbones import FAMILIES
from attnzoo.cli import main
from attnzoo.weights.fetch import url_cache_path
from attnzoo.zoo import convert_official, family_of
from attnzoo.zoo.export import check_rtol, export_onnx
from attnzoo.zoo.facts import create_for_size, smallest_variant_per_family
from tests.helpers.shallow import shallow_kwargs

EXPORT_SIZE = 96  # small, and not the training size: position embeddings must resample in the graph
# The smallest model of each family, plus models whose attention is a different graph in the same
# family (InfViT's pure mode; the smallest InfViT is a linear one).
EXPORTED = sorted({*smallest_variant_per_family(), "infvit_pure_tiny_patch16_224"})


@pytest.mark.parametrize("depth", ["shallow", pytest.param("full", marks=pytest.mark.slow)])
@pytest.mark.parametrize("name", EXPORTED)
def test_export_matches_onnxruntime_at_other_batches(name, depth, tmp_path):
    """Default tier: each model's shallow build (tests/helpers/shallow.py); slow tier: the full model."""
    path = tmp_path / f"{name}.onnx"
    torch.manual_seed(0)
    model = create_for_size(name, EXPORT_SIZE, **(shallow_kwargs(name) if depth == "shallow" else {}))
    report = export_onnx(model, path, img_size=EXPORT_SIZE)
    assert path.is_file() and report.path == path
    assert report.check_batch != 2, "the check must use a batch other than the traced one"
    rtol = check_rtol(model)
    assert report.max_abs_diff <= 1e-4 + rtol * report.max_abs_output

    # Independent of the report: batch 1 through onnxruntime against the same torch model.
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(1, 3, EXPORT_SIZE, EXPORT_SIZE, generator=torch.Generator().manual_seed(5))
    (got,) = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        want = model(x).numpy()
    assert got.shape == want.shape == (1, model.num_classes)
    np.testing.assert_allclose(got, want, atol=1e-4 + rtol * np.abs(want).max(), rtol=0)


def test_failed_check_keeps_existing_file(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"user data")
    with pytest.raises(RuntimeError, match="was not written"):
        export_onnx("az_convit_tiny", path, img_size=64, atol=-1.0, rtol=0.0)
    assert path.read_bytes() == b"user data"
    assert list(tmp_path.iterdir()) == [path], "temporary files were left behind"


def _written_opset(path) -> int:
    """The default-domain opset in an ONNX file's header, as the onnx package reads it."""
    model = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _tiny_net() -> torch.nn.Module:
    """A classifier of a few ops (GELU included): cheap to export at any opset."""
    torch.manual_seed(0)
    layers = [torch.nn.Conv2d(3, 4, 3), torch.nn.GELU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()]
    return torch.nn.Sequential(*layers, torch.nn.Linear(4, 5)).eval()


def test_the_opset_asked_for_is_the_opset_written(tmp_path):
    path = tmp_path / "tiny.onnx"
    report = export_onnx(_tiny_net(), path, img_size=16, opset=19)
    assert report.opset == _written_opset(path) == 19


def test_an_opset_the_converter_misses_is_refused_not_written(tmp_path, monkeypatch):
    """torch.onnx keeps its own opset when the ONNX converter fails (it only logs a warning): simulated
    by an exporter that ignores the opset asked for."""
    export = torch.onnx.export
    monkeypatch.setattr(torch.onnx, "export", lambda *a, **kw: export(*a, **{**kw, "opset_version": 18}))
    path = tmp_path / "tiny.onnx"
    with pytest.raises(ValueError, match="from opset 18 to 19.*was not written"):
        export_onnx(_tiny_net(), path, img_size=16, opset=19)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("opset", [13, 17, 99])
def test_an_opset_outside_the_supported_range_is_refused_before_any_work(opset, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.onnx, "export", None)  # never reached
    with pytest.raises(ValueError, match=f"opset {opset} is not supported: attnzoo exports opsets 18 to"):
        export_onnx(_tiny_net(), tmp_path / "tiny.onnx", opset=opset)
    assert not list(tmp_path.iterdir())


def test_unknown_model_is_named():
    with pytest.raises(ValueError, match="unknown model 'no_such_net'"):
        export_onnx("no_such_net", "unused.onnx")


def test_cli_export(tmp_path, capsys):
    path = tmp_path / "out.onnx"
    assert main(["export", "az_convit_tiny", str(path), "--img-size", "64"]) == 0
    assert _written_opset(path) == 18  # the default
    out = capsys.readouterr().out
    assert "opset 18" in out and "max |diff|" in out


# ------------------------------------------------------------------- exporting trained weights
WEIGHTED = "az_convit_tiny"  # a release on a direct URL (after its Hub copy) and a cheap export
WEIGHTED_SIZE = 64


def _place_official_release(**model_kwargs) -> dict[str, torch.Tensor]:
    """Put an official-format checkpoint where the fetcher caches the default tag's release URL."""
    weights = FAMILIES[family_of(WEIGHTED)].weights_for(WEIGHTED)
    path = url_cache_path(weights, weights.official_url)
    torch.manual_seed(7)
    official = timm.create_model("convit_tiny", **model_kwargs).state_dict()  # timm's is the official ConViT
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": official, "epoch": 299}, path)
    return official


def _assert_onnx_is(path, model, size=WEIGHTED_SIZE):
    """onnxruntime on ``path`` gives ``model``'s output on a fresh batch."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(9))
    (got,) = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        want = model.eval()(x).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-4 + check_rtol(model) * np.abs(want).max(), rtol=0)


def test_export_pretrained_uses_the_default_tag(hub_cache, tmp_path):
    kwargs = shallow_kwargs(WEIGHTED)
    official = _place_official_release(**kwargs)
    path = tmp_path / "pretrained.onnx"
    export_onnx(WEIGHTED, path, img_size=WEIGHTED_SIZE, pretrained=True, **kwargs)
    reference = create_for_size(WEIGHTED, WEIGHTED_SIZE, pretrained=True, **kwargs)
    # the release's weights (not a random init) are what the graph computes with
    torch.testing.assert_close(reference.blocks[1].mlp.fc1.weight, official["blocks.1.mlp.fc1.weight"])
    _assert_onnx_is(path, reference)


def test_export_checkpoint_follows_its_classes(tmp_path):
    kwargs = shallow_kwargs(WEIGHTED)
    torch.manual_seed(3)
    trained = timm.create_model(WEIGHTED, num_classes=7, **kwargs).state_dict()
    ckpt = tmp_path / "last.pth.tar"  # timm train.py's layout
    torch.save(
        {"epoch": 3, "arch": WEIGHTED, "state_dict": trained, "args": argparse.Namespace(lr=0.1)}, ckpt
    )
    path = tmp_path / "trained.onnx"
    report = export_onnx(WEIGHTED, path, img_size=WEIGHTED_SIZE, checkpoint=ckpt, **kwargs)
    assert report.notes == ()
    reference = create_for_size(WEIGHTED, WEIGHTED_SIZE, num_classes=7, **kwargs)
    reference.load_state_dict(convert_official(WEIGHTED, trained, reference))  # pos_embed resampled to 64 px
    torch.testing.assert_close(reference.head.weight, trained["head.weight"])
    _assert_onnx_is(path, reference)


def test_export_weight_options_are_checked(tmp_path):
    with pytest.raises(ValueError, match="pretrained and checkpoint exclude each other"):
        export_onnx(WEIGHTED, tmp_path / "x.onnx", pretrained=True, checkpoint=tmp_path / "c.pth")
    with pytest.raises(ValueError, match="need a model name"):
        export_onnx(torch.nn.Identity(), tmp_path / "x.onnx", pretrained=True)
    assert not list(tmp_path.iterdir())


def test_cli_export_pretrained(hub_cache, tmp_path):
    official = _place_official_release()
    path = tmp_path / "out.onnx"
    assert main(["export", WEIGHTED, str(path), "--img-size", str(WEIGHTED_SIZE), "--pretrained"]) == 0
    reference = create_for_size(WEIGHTED, WEIGHTED_SIZE, pretrained=True)
    torch.testing.assert_close(reference.patch_embed.proj.weight, official["patch_embed.proj.weight"])
    _assert_onnx_is(path, reference)


def test_cli_export_pretrained_unavailable_is_one_line(hub_cache, tmp_path, capsys):
    assert main(["export", WEIGHTED, str(tmp_path / "out.onnx"), "--pretrained"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"attnzoo export: error: no pretrained weights for {WEIGHTED}.fb_in1k"), err
    assert err.count("\n") == 1 and "HF_HUB_OFFLINE" in err and "pretrained_cfg_overlay" in err
    assert not (tmp_path / "out.onnx").exists()


def test_cli_export_weight_flags(tmp_path, capsys):
    out = str(tmp_path / "out.onnx")
    ckpt = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], ckpt)
    assert main(["export", WEIGHTED, out, "--pretrained", "--checkpoint", str(ckpt)]) == 2
    assert "not allowed with argument" in capsys.readouterr().err
    assert main(["export", WEIGHTED, out, "--checkpoint", str(ckpt)]) == 2
    assert capsys.readouterr().err == f"attnzoo export: error: {ckpt} holds a list, not a state dict\n"
    assert not (tmp_path / "out.onnx").exists()

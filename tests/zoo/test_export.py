"""ONNX export: the smallest variant of every family exports and onnxruntime reproduces torch."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from attnzoo.cli import main
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


def test_unknown_model_is_named():
    with pytest.raises(ValueError, match="unknown model 'no_such_net'"):
        export_onnx("no_such_net", "unused.onnx")


def test_cli_export(tmp_path, capsys):
    path = tmp_path / "out.onnx"
    assert main(["export", "az_convit_tiny", str(path), "--img-size", "64"]) == 0
    assert path.is_file()
    assert "max |diff|" in capsys.readouterr().out

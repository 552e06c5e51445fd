"""ONNX export of attnzoo models, checked against onnxruntime before the file is handed over.

Export always traces the pure-torch reference kernels (a Triton kernel has no ONNX form), through
``torch.onnx.export(..., dynamo=True)``. The batch dimension is dynamic; the graph is checked at a
batch size other than the one it was traced with, so a batch that got baked in fails here, not later
in the user's runtime. The file is written to a temporary name and moved into place only once it has
passed, so a failed export never replaces an existing file.

The weights are random unless asked for: the model's default pretrained tag (``pretrained=True``,
fetched as ``timm.create_model`` does) or any checkpoint ``attnzoo convert`` reads (``checkpoint=``,
loaded strictly; the class count follows the checkpoint).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from attnzoo.kernels import use_kernels
from attnzoo.zoo.convert import checkpoint_classes, load_for_model, load_into
from attnzoo.zoo.facts import create_for_size, resolve_input_size
from attnzoo.zoo.registry import require_model

__all__ = ["ExportReport", "check_rtol", "export_onnx"]

TRACE_BATCH = 2
CHECK_BATCH = 3


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_onnx` wrote and how closely onnxruntime reproduced torch."""

    path: Path
    input_size: tuple[int, int, int]
    opset: int
    max_abs_diff: float
    max_abs_output: float
    check_batch: int
    notes: tuple[str, ...] = ()  # what loading the checkpoint said (see attnzoo.zoo.load_for_model)


def check_rtol(model: nn.Module, rtol: float = 1e-4) -> float:
    """The relative tolerance of the onnxruntime check: ``rtol``, or the model's ``onnx_rtol`` if
    larger. A top-k choice whose k-th and (k+1)-th scores differ by less than the float32 rounding of
    the two runtimes can flip, which moves the output by far more than rounding does."""
    return max(rtol, float(getattr(model, "onnx_rtol", 0.0)))


def export_onnx(
    model: str | nn.Module,
    path: str | os.PathLike,
    img_size: int | Sequence[int] | None = None,
    opset: int = 18,
    atol: float = 1e-4,
    rtol: float = 1e-4,
    *,
    pretrained: bool = False,
    checkpoint: str | os.PathLike | None = None,
    ema: bool = False,
    **model_kwargs: Any,
) -> ExportReport:
    """Export ``model`` (a registered name or a module) to ``path`` with a dynamic batch dimension.

    ``img_size`` (an int or (H, W)) overrides the model's default input size (a model with a fixed
    size is rebuilt for it, the timm way). For a model name: ``pretrained`` loads its default
    pretrained tag (``attnzoo.weights.PretrainedUnavailableError`` when no source can be had),
    ``checkpoint`` a file (``ema``: its EMA weights); the two exclude each other. ``model_kwargs`` go
    to ``timm.create_model``.

    The graph is run in onnxruntime on a fresh random batch and compared with the torch model in
    eval mode; a mismatch beyond ``atol + rtol * max |torch output|`` raises and leaves ``path``
    untouched. A model whose forward makes discrete choices (top-k keys) declares a larger relative
    tolerance as ``onnx_rtol`` (see :func:`check_rtol`).
    """
    import onnxruntime as ort

    path = Path(path)
    if isinstance(model, str):
        net, notes = _build(model, img_size, pretrained, checkpoint, ema, model_kwargs)
    elif pretrained or checkpoint is not None or ema or model_kwargs:
        raise ValueError("pretrained, checkpoint, ema and model kwargs need a model name, not a module")
    else:
        net, notes = model.eval(), []
    rtol = check_rtol(net, rtol)
    size = resolve_input_size(net, img_size)
    gen = torch.Generator().manual_seed(0)
    example = torch.randn(TRACE_BATCH, *size, generator=gen)
    check = torch.randn(CHECK_BATCH, *size, generator=gen)
    batch = torch.export.Dim("batch", min=1, max=4096)

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(suffix=".onnx", dir=path.parent, prefix=f".{path.stem}.")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with use_kernels("torch"), torch.no_grad():
            program = torch.onnx.export(
                net,
                (example,),
                dynamo=True,
                dynamic_shapes=({0: batch},),
                input_names=["images"],
                output_names=["output"],
                opset_version=opset,
                verbose=False,
            )
            program.save(str(tmp))
            expected = net(check)
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        (got,) = session.run(None, {"images": check.numpy()})
        want = expected.numpy()
        if got.shape != want.shape:
            raise RuntimeError(f"onnxruntime output shape {got.shape} != torch output shape {want.shape}")
        diff = float(np.abs(got - want).max())
        scale = float(np.abs(want).max())
        if not diff <= atol + rtol * scale:
            raise RuntimeError(
                f"onnxruntime differs from torch by {diff:.3g} (max |output| {scale:.3g}); "
                f"{path} was not written"
            )
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
        Path(f"{tmp}.data").unlink(missing_ok=True)
    return ExportReport(path, size, opset, diff, scale, CHECK_BATCH, tuple(notes))


def _build(
    name: str,
    img_size: int | Sequence[int] | None,
    pretrained: bool,
    checkpoint: str | os.PathLike | None,
    ema: bool,
    model_kwargs: dict[str, Any],
) -> tuple[nn.Module, list[str]]:
    """The model to export, with the weights asked for, and the notes on its checkpoint."""
    require_model(name)
    if pretrained and checkpoint is not None:
        raise ValueError("pretrained and checkpoint exclude each other: pass one of them")
    if checkpoint is None:
        if ema:
            raise ValueError("ema picks a checkpoint's EMA weights: pass checkpoint too")
        return create_for_size(name, img_size, pretrained=pretrained, **model_kwargs), []
    state, notes = load_for_model(name, checkpoint, ema=ema, **model_kwargs)
    net = create_for_size(name, img_size, num_classes=checkpoint_classes(name, state), **model_kwargs)
    load_into(net, name, state, checkpoint)
    return net.eval(), notes

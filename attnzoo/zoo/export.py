"""ONNX export of attnzoo models, checked against onnxruntime before the file is handed over.

Export always traces the pure-torch reference kernels (a Triton kernel has no ONNX form), through
``torch.onnx.export(..., dynamo=True)``. The batch dimension is dynamic; the graph is checked at a
batch size other than the one it was traced with, so a batch that got baked in fails here, not later
in the user's runtime. The file is written to a temporary name and moved into place only once it has
passed, so a failed export never replaces an existing file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from attnzoo.kernels import use_kernels
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
) -> ExportReport:
    """Export ``model`` (a registered name or a module) to ``path`` with a dynamic batch dimension.

    ``img_size`` (an int or (H, W)) overrides the model's default input size (a model with a fixed
    size is rebuilt for it, the timm way).

    The graph is run in onnxruntime on a fresh random batch and compared with the torch model in
    eval mode; a mismatch beyond ``atol + rtol * max |torch output|`` raises and leaves ``path``
    untouched. A model whose forward makes discrete choices (top-k keys) declares a larger relative
    tolerance as ``onnx_rtol`` (see :func:`check_rtol`).
    """
    import onnxruntime as ort

    path = Path(path)
    if isinstance(model, str):
        require_model(model)
        net = create_for_size(model, img_size)
    else:
        net = model.eval()
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
    return ExportReport(path, size, opset, diff, scale, CHECK_BATCH)

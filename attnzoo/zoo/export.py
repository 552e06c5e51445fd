"""ONNX export of attnzoo models, checked against onnxruntime before the file is handed over.

Export always traces the pure-torch reference kernels (a Triton kernel has no ONNX form), through
``torch.onnx.export(..., dynamo=True)``. The batch dimension is dynamic; the graph is checked at a
batch size other than the one it was traced with, so a batch that got baked in fails here, not later
in the user's runtime. The file is written to a temporary name (``.<stem>.*.onnx`` beside it, removed
however the export ends, Ctrl-C and SIGTERM included) and moved into place only once it has passed, so
a failed export never replaces an existing file.

The opset asked for is the opset written, or nothing is written: torch.onnx builds graphs at opset 18
or above and reaches another opset only through the ONNX version converter, which can fail for a graph
(it then only logs a warning and keeps the graph's opset). Opsets below 18 are refused up front: the
converter fails on attnzoo's graphs there (tried with ConViT and HaloNet at 13 and 17).

The weights are random unless asked for: the model's default pretrained tag (``pretrained=True``,
fetched as ``timm.create_model`` does) or any checkpoint ``attnzoo convert`` reads (``checkpoint=``,
loaded strictly; the class count follows the checkpoint).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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
from attnzoo.zoo.targets import check_target

__all__ = ["ExportReport", "check_rtol", "export_onnx", "supported_opsets"]

TRACE_BATCH = 2
CHECK_BATCH = 3
BASE_OPSET = 18  # the lowest opset torch.onnx's exporter builds graphs at (its torchlib's)
_CONVERTER_LOGGER = "onnxscript.version_converter"  # reports a failed conversion as a logged warning


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


def supported_opsets() -> range:
    """The opsets :func:`export_onnx` accepts: 18 up to the newest the installed ``onnx`` defines."""
    import onnx

    return range(BASE_OPSET, onnx.defs.onnx_opset_version() + 1)


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

    ``opset`` must be in :func:`supported_opsets` (``ValueError`` before any work otherwise), and a
    graph the converter cannot bring to ``opset`` raises ``ValueError`` instead of being written. A
    ``path`` that cannot be written (a folder, ``.``, a parent that is a file or without permission)
    raises an ``OSError`` before any work.

    The graph is run in onnxruntime on a fresh random batch and compared with the torch model in
    eval mode; a mismatch beyond ``atol + rtol * max |torch output|`` raises ``RuntimeError`` and
    leaves ``path`` untouched. A model whose forward makes discrete choices (top-k keys) declares a
    larger relative tolerance as ``onnx_rtol`` (see :func:`check_rtol`).
    """
    import onnxruntime as ort

    path = check_target(path, folder=False)
    opsets = supported_opsets()
    if opset not in opsets:
        raise ValueError(
            f"opset {opset} is not supported: attnzoo exports opsets {opsets.start} to {opsets.stop - 1}"
        )
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

    with use_kernels("torch"), torch.no_grad(), _converter_log() as converter_log:
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
        expected = net(check)
    _check_opset(program.model_proto, opset, converter_log, path)

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(suffix=".onnx", dir=path.parent, prefix=f".{path.stem}.")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        program.save(str(tmp))
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


class _Kept(logging.Handler):
    """Keeps log records instead of printing them."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def _converter_log() -> Iterator[list[logging.LogRecord]]:
    """The version converter's log records, kept for an error message instead of printed (its failure
    is a warning with a traceback, which would reach the user's terminal through logging's last resort)."""
    kept = _Kept()
    logger = logging.getLogger(_CONVERTER_LOGGER)
    propagate, logger.propagate = logger.propagate, False
    logger.addHandler(kept)
    try:
        yield kept.records
    finally:
        logger.removeHandler(kept)
        logger.propagate = propagate


def _check_opset(proto: Any, opset: int, converter_log: list[logging.LogRecord], path: Path) -> None:
    """Refuse a graph whose default-domain opset is not ``opset`` (the converter failed), naming why."""
    written = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if written == opset:
        return
    failures = [r.exc_info[1] for r in converter_log if r.exc_info and r.exc_info[1] is not None]
    why = f": {str(failures[-1]).strip().splitlines()[0]}" if failures else ""
    raise ValueError(
        f"the ONNX converter could not bring this graph from opset {written} to {opset}{why}; "
        f"opset {BASE_OPSET} always works; {path} was not written"
    )


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

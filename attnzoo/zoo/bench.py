"""Model facts (parameters, FLOPs, feature strides) and throughput, shared by the CLI and benchmarks/.

FLOPs are always counted on the pure-torch reference kernels: ``FlopCounterMode`` only sees aten ops,
and the reference path is the same math as the Triton kernels, so the count does not depend on the
device the model later runs on.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import timm
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from attnzoo.kernels import dispatch
from attnzoo.zoo.registry import family_of, list_families, list_models

__all__ = [
    "BenchResult",
    "benchmark_model",
    "count_gflops",
    "count_params",
    "create_for_size",
    "feature_strides",
    "format_table",
    "kernels_used",
    "param_count",
    "resolve_input_size",
    "smallest_variant_per_family",
]


@dataclass(frozen=True)
class BenchResult:
    """One row of a model benchmark: static facts plus the measured throughput.

    ``gflops`` is per image at ``input_size`` (torch's count, 2 FLOPs per multiply-add);
    ``images_per_s`` is measured at ``batch_size`` on ``device``; ``kernel_backend`` names the attnzoo
    Triton ops the model ran (see :func:`kernels_used`).
    """

    model: str
    family: str
    params: int
    gflops: float
    kernel_backend: str
    images_per_s: float
    strides: tuple[int, ...]
    input_size: tuple[int, int, int]
    batch_size: int = 1
    device: str = "cpu"


def count_params(model: nn.Module) -> int:
    """Number of parameters (shared tensors counted once), as papers and timm report them."""
    return sum(p.numel() for p in model.parameters())


def count_gflops(model: nn.Module, input_size: Sequence[int] = (3, 224, 224), batch_size: int = 1) -> float:
    """Forward GFLOPs for ``batch_size`` images of ``input_size`` (C, H, W), on the reference kernels.

    The number is FLOPs / 1e9 exactly as ``torch.utils.flop_counter`` counts them: a multiply-add is
    2 FLOPs (so it is twice the "GMACs" many papers print), and only matmul / conv / SDPA-style ops
    are counted (elementwise ops, norms and softmax are not).
    """
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    x = torch.zeros(batch_size, *input_size, device=device, dtype=dtype)
    was_training = model.training
    model.eval()
    try:
        with dispatch.use_kernels("torch"), torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 1e9


def feature_strides(model_name: str, model: nn.Module | None = None) -> tuple[int, ...]:
    """Reductions (strides) of the maps ``features_only=True`` returns by default, i.e. what a detector
    or segmenter gets; falls back to ``model.feature_info`` (every tap) if features_only fails."""
    try:
        feats = timm.create_model(model_name, features_only=True)
        return tuple(int(r) for r in feats.feature_info.reduction())
    except Exception:
        info = getattr(model, "feature_info", None) if model is not None else None
        if not info:
            raise
        if hasattr(info, "reduction"):  # a FeatureInfo (features_only model)
            return tuple(int(r) for r in info.reduction())
        return tuple(int(f["reduction"]) for f in info)


class _AttnzooOpRecorder(TorchDispatchMode):
    """Records the attnzoo ops (the Triton kernels' ``torch.library`` ops) that a forward calls."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace == "attnzoo":
            self.ops.add(func._opname)
        return func(*args, **(kwargs or {}))


def kernels_used(model: nn.Module, x: torch.Tensor) -> str:
    """What runs ``model``'s attention on ``x``: 'triton: <ops>' for the attnzoo Triton ops one forward
    calls, or 'torch' when none is (CPU, a family without a custom kernel, or ``ATTNZOO_KERNELS=torch``).
    """
    recorder = _AttnzooOpRecorder()
    with torch.no_grad(), recorder:
        model(x)
    return "triton: " + ", ".join(sorted(recorder.ops)) if recorder.ops else "torch"


def resolve_input_size(model: nn.Module, img_size: int | Sequence[int] | None = None) -> tuple[int, int, int]:
    """(C, H, W) to feed ``model``: its pretrained_cfg input_size, with H and W replaced by ``img_size``."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    chans, height, width = tuple(cfg.get("input_size", (3, 224, 224)))
    if img_size is None:
        return int(chans), int(height), int(width)
    if isinstance(img_size, int):
        return int(chans), img_size, img_size
    h, w = img_size
    return int(chans), int(h), int(w)


def create_for_size(name: str, img_size: int | Sequence[int] | None = None, **kwargs: Any) -> nn.Module:
    """``timm.create_model(name)`` in eval mode, rebuilt for ``img_size`` if its cfg says the size is fixed.

    Models with ``fixed_input_size`` (e.g. learned position embeddings) take the size at construction,
    the timm way (``img_size=``); the others accept any size as they are.
    """
    model = timm.create_model(name, **kwargs)
    if img_size is not None and (getattr(model, "pretrained_cfg", None) or {}).get("fixed_input_size"):
        _, h, w = resolve_input_size(model, img_size)
        model = timm.create_model(name, img_size=(h, w), **kwargs)
    return model.eval()


def benchmark_model(
    name: str,
    batch_size: int = 1,
    img_size: int | Sequence[int] | None = None,
    warmup: int = 1,
    iters: int = 3,
    device: str | torch.device = "cpu",
) -> BenchResult:
    """Build ``name`` (random weights), count its facts and time eval-mode forward passes.

    The input size is the model's pretrained_cfg ``input_size`` unless ``img_size`` is given; the
    kernels are those the dispatch rule picks on ``device`` (Triton on CUDA when available).
    """
    family = family_of(name)
    device = torch.device(device)
    model = create_for_size(name, img_size)
    input_size = resolve_input_size(model, img_size)
    params = count_params(model)
    gflops = count_gflops(model, input_size)
    strides = feature_strides(name, model)

    model = model.to(device)
    x = torch.randn(batch_size, *input_size, device=device)
    backend = kernels_used(model, x)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    with torch.no_grad():
        for _ in range(warmup):
            model(x)
        sync()
        start = time.perf_counter()
        for _ in range(iters):
            model(x)
        sync()
        elapsed = time.perf_counter() - start
    images_per_s = batch_size * iters / elapsed if elapsed > 0 else float("inf")
    return BenchResult(
        model=name,
        family=family,
        params=params,
        gflops=gflops,
        kernel_backend=backend,
        images_per_s=images_per_s,
        strides=strides,
        input_size=input_size,
        batch_size=batch_size,
        device=str(device),
    )


@functools.cache
def param_count(name: str) -> int:
    """Parameter count of a registered model, built on the meta device (no weight memory) where its
    constructor allows, else on CPU; cached, since the count depends on the name only."""
    try:
        with torch.device("meta"):
            return count_params(timm.create_model(name))
    except Exception:  # some constructors compute on tensors and cannot run on meta
        return count_params(timm.create_model(name))


def smallest_variant_per_family() -> list[str]:
    """Per family (in registration order) the model with the fewest parameters: a cheap smoke set."""
    out = []
    for family in list_families():
        names = list_models(family)
        out.append(min(names, key=lambda n: (param_count(n), n)))
    return out


def _fmt_rate(rate: float) -> str:
    return f"{rate:.1f}" if rate < 1000 else f"{rate:.0f}"


def format_table(rows: Sequence[BenchResult]) -> str:
    """An aligned plain-text table: model, family, params (M), GFLOPs, kernels, img/s, strides."""
    header = ("model", "family", "params (M)", "GFLOPs", "kernels", "img/s", "strides")
    body = [
        (
            r.model,
            r.family,
            f"{r.params / 1e6:.2f}",
            f"{r.gflops:.2f}",
            r.kernel_backend,
            _fmt_rate(r.images_per_s),
            ",".join(str(s) for s in r.strides),
        )
        for r in rows
    ]
    numeric = {2, 3, 5}
    widths = [max(len(row[i]) for row in (header, *body)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        parts = [
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(row) for row in body)])

"""Throughput of whole models (``attnzoo bench``) and which attnzoo kernels they ran.

The static facts in each row (parameters, FLOPs, strides) come from :mod:`attnzoo.zoo.facts`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from attnzoo.kernels.registry import op_names
from attnzoo.zoo.facts import count_gflops, count_params, create_for_size, feature_strides, resolve_input_size
from attnzoo.zoo.registry import family_of

__all__ = ["BenchResult", "KernelRecorder", "benchmark_model", "format_table", "kernels_used"]


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


class KernelRecorder(TorchDispatchMode):
    """Records which registered kernels (:mod:`attnzoo.kernels.registry`) the enclosed code runs as
    Triton ops (forward or backward): ``with KernelRecorder() as rec: ...``, then ``rec.describe()``."""

    def __init__(self) -> None:
        super().__init__()
        self.kernels: set[str] = set()
        self._names = op_names()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kernel = self._names.get(func.name())
        if kernel is not None:
            self.kernels.add(kernel)
        return func(*args, **(kwargs or {}))

    def describe(self) -> str:
        """'triton: <ops>' for the recorded kernels, or 'torch' when none ran."""
        return "triton: " + ", ".join(sorted(self.kernels)) if self.kernels else "torch"


def kernels_used(model: nn.Module, x: torch.Tensor) -> str:
    """What runs ``model``'s attention on ``x``: 'triton: <ops>' for the attnzoo Triton ops one forward
    calls, or 'torch' when none is (CPU, a family without a custom kernel, or ``ATTNZOO_KERNELS=torch``).
    """
    recorder = KernelRecorder()
    with torch.no_grad(), recorder:
        model(x)
    return recorder.describe()


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

"""``@triton.autotune`` for attnzoo's kernels: one place that says which launch configs are tried.

Block sizes follow from the problem (head dim, window, region), so the kernels tune only what the
shape does not fix: warps per program and pipeline stages. The key is the launch's shape arguments,
so a new stage shape is tuned once and then cached (also on disk, in Triton's cache). Each config is
timed briefly (5 ms warm-up, 25 ms of runs), since a model meets many shapes on its first batch.
Under the CPU interpreter (``TRITON_INTERPRET=1``) there is nothing to time: only the first config
is kept and no benchmarking runs; ``ATTNZOO_AUTOTUNE=0`` does the same on a GPU (read at import: a
quick start, e.g. for tests that meet hundreds of shapes once each). ``ATTNZOO_AUTOTUNE=compile``
compiles every config and times none, caching no choice: processes that only fill Triton's compile
cache in parallel (``benchmarks/gpu_suite.py --warm-workers``), so that a timed process compiles
nothing.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence

import triton
import triton.testing

from attnzoo.kernels.dispatch import triton_interpreter

__all__ = ["FOUR_WARPS_AT_MOST", "GATHER_WARPS_STAGES", "ONE_STAGE", "TUNED", "WARPS_STAGES", "autotune"]

# (num_warps, num_stages): the first, Triton's own default, is the one the interpreter keeps.
WARPS_STAGES: tuple[tuple[int, int], ...] = ((4, 3), (4, 2), (8, 3), (8, 2), (2, 2), (4, 1))
# Row-gather kernels (one query row's selected keys per program): few warps, the measured best was 1.
GATHER_WARPS_STAGES: tuple[tuple[int, int], ...] = ((1, 3), (1, 2), (2, 2), (2, 3), (4, 2))
# Kernels that must not software-pipeline: KArAt's would buffer the 2G + 1 coefficient tiles of several
# key tiles in shared memory (over the 227 KiB of an H200 at G = 4 in fp32). No 8 warps either: on an
# H200 (triton 3.6, 2026-11-26) KArAt's forward / dQ kernels at 8 warps and one stage hit an illegal
# memory access (8x3x197x64 and 2x3x4150x64, bf16 and fp32), while 2 and 4 warps ran clean on the same
# problems (a probe with CUDA_LAUNCH_BLOCKING=1, one process per config).
ONE_STAGE: tuple[tuple[int, int], ...] = ((4, 1), (2, 1))
# MALA / InLine linear attention: no 8 warps. On an H200 (triton 3.6, 2026-11-26) its 8-warp configs
# gave a wrong dV for 16-bit inputs (bf16 and fp16: 42-49% of entries off, by up to 0.84) while every
# 2- and 4-warp config matched the reference (tests/kernels/test_tuned_configs.py). Which of its five
# kernels goes wrong was not isolated, so none of them tries 8 warps.
FOUR_WARPS_AT_MOST: tuple[tuple[int, int], ...] = tuple(ws for ws in WARPS_STAGES if ws[0] <= 4)


def autotune(key: Sequence[str], warps_stages: Sequence[tuple[int, int]] = WARPS_STAGES) -> Callable:
    """Decorate a ``@triton.jit`` kernel to pick ``(num_warps, num_stages)`` per ``key`` (the names
    of the shape arguments that change which config is fastest).

    Only kernels whose outputs are written, not accumulated, may be tuned: a timed trial runs the
    kernel on the real buffers, so a kernel that adds into its output would add once per trial.
    """
    every = tuple(triton.Config({}, num_warps=w, num_stages=s) for w, s in warps_stages)
    configs = list(every if _TUNE else every[:1])
    bench = _compile_only if _MODE == "compile" else _BENCH

    def decorate(kernel: triton.JITFunction) -> triton.runtime.Autotuner:
        tuner = triton.autotune(
            configs=configs, key=list(key), do_bench=bench, cache_results=_MODE != "compile"
        )(kernel)
        TUNED[f"{kernel.fn.__module__}.{kernel.fn.__name__}"] = (tuner, every)
        return tuner

    return decorate


# Every tuned kernel by qualified name (``attnzoo.kernels.<op package>.kernels.<kernel>``): its autotuner
# and every config it may pick, also where only the first is tried (the interpreter,
# ``ATTNZOO_AUTOTUNE=0``), so that tests can run each config (tests/kernels/test_tuned_configs.py).
TUNED: dict[str, tuple[triton.runtime.Autotuner, tuple[triton.Config, ...]]] = {}


def _compile_only(kernel_call: Callable[[], object], quantiles: Sequence[float]) -> list[float]:
    """A stand-in timer: one call (which compiles the config), the same time for every config."""
    kernel_call()
    return [0.0] * len(quantiles)


_MODE = os.environ.get("ATTNZOO_AUTOTUNE", "1")
_TUNE = not triton_interpreter() and _MODE != "0"
_BENCH = functools.partial(triton.testing.do_bench, warmup=5, rep=25)

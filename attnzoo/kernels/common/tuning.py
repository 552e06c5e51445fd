"""``@triton.autotune`` for attnzoo's kernels: one place that says which launch configs are tried.

Block sizes follow from the problem (head dim, window, region), so the kernels tune only what the
shape does not fix: warps per program and pipeline stages. The key is the launch's shape arguments,
so a new stage shape is tuned once and then cached. Under the CPU interpreter (``TRITON_INTERPRET=1``)
there is nothing to time, so only the first config is kept and no benchmarking runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import triton

__all__ = ["WARPS_STAGES", "autotune"]

# (num_warps, num_stages): the first is the interpreter's and the old fixed default.
WARPS_STAGES: tuple[tuple[int, int], ...] = ((4, 2), (4, 3), (8, 2), (8, 3), (2, 2), (4, 1))


def autotune(key: Sequence[str], warps_stages: Sequence[tuple[int, int]] = WARPS_STAGES) -> Callable:
    """Decorate a ``@triton.jit`` kernel to pick ``(num_warps, num_stages)`` per ``key`` (the names
    of the shape arguments that change which config is fastest).

    Only kernels whose outputs are written, not accumulated, may be tuned: a timed trial runs the
    kernel on the real buffers, so a kernel that adds into its output would add once per trial.
    """
    pairs = warps_stages[:1] if os.environ.get("TRITON_INTERPRET", "0") == "1" else warps_stages
    configs = [triton.Config({}, num_warps=w, num_stages=s) for w, s in pairs]
    return triton.autotune(configs=configs, key=list(key))

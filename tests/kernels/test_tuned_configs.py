"""Every launch config the autotuner may pick computes the op right: the battery's reference check,
once per config, with the op's tuned kernels held to that config.

On a GPU the autotuner keeps whichever config is fastest there, so any of them may run for a user,
while the battery (run with ``ATTNZOO_AUTOTUNE=0``) meets only the first. Configs differ only in warps
and pipeline stages, which the CPU interpreter ignores: CUDA only. On an H200 (triton 3.6) such checks
found that KArAt's 8-warp config faults and that linear attention's 8-warp configs return a wrong dV
in 16 bits, which is why neither tunes 8 warps (``common.tuning``).
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")  # an optional extra: without it there are no kernels to tune

from attnzoo.kernels.common.tuning import TUNED  # noqa: E402
from attnzoo.kernels.registry import KERNELS, KernelSpec  # noqa: E402
from tests.helpers.kernel_check import DTYPE_IDS, check_spec  # noqa: E402

SEEDS = (0, 1)


def _tuned(spec: KernelSpec) -> list[str]:
    """The qualified names of the op's tuned kernels (its package is its spec module's)."""
    package = spec.make_problem.__module__.rsplit(".", 1)[0]
    return [key for key in TUNED if key.startswith(f"{package}.")]


def _cases():
    for name, spec in KERNELS.items():
        count = max((len(TUNED[key][1]) for key in _tuned(spec)), default=0)
        for index in range(1, count):  # config 0: the battery's
            for dtype in spec.dtypes:
                yield pytest.param(name, index, dtype, id=f"{name}-config{index}-{DTYPE_IDS[dtype]}")


def test_every_op_is_tuned():
    """Each op's package has tuned kernels, so the cases below cover it."""
    assert all(_tuned(spec) for spec in KERNELS.values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="warps / stages: CUDA only")
@pytest.mark.parametrize(("name", "index", "dtype"), list(_cases()))
def test_config_matches_reference(name, index, dtype):
    spec = KERNELS[name]
    saved = {}
    for key in _tuned(spec):
        tuner, every = TUNED[key]
        saved[key] = tuner.configs
        tuner.configs = [every[min(index, len(every) - 1)]]
    try:
        for seed in SEEDS:
            tensors, args = spec.make_problem(seed)
            check_spec(spec, tensors, args, dtype, seed=seed)
    finally:
        for key, configs in saved.items():
            TUNED[key][0].configs = configs

"""ContMix's entry in the kernel registry: random problems for the kernel battery."""

from __future__ import annotations

import torch

from attnzoo.kernels.contmix.op import contmix
from attnzoo.kernels.contmix.reference import contmix_reference
from attnzoo.kernels.registry import KernelSpec, Problem, register


def problem(b: int, g: int, h: int, w: int, c: int, cv: int, k: int, gen: torch.Generator) -> Problem:
    """Random inputs of one shape: q scaled by ``C^-1/2`` (as the layer scales it), proj with unit
    column variance of its logits, biases of O(0.5). Tensors ``[q, proj, proj_bias, rpb, v]``."""

    def t(*shape, std=1.0):
        return torch.randn(*shape, generator=gen) * std

    tensors = [
        t(b, g, h, w, c, std=c**-0.5),
        t(b, g, c, k * k),
        t(k * k, std=0.5),
        t(g, 2 * k - 1, 2 * k - 1, std=0.5),
        t(b, g, h, w, cv),
    ]
    return tensors, ()


WINDOWS = (5, 7, 13, 3, 9, 1)


def make_problem(seed: int) -> Problem:
    """Small random problems where borders matter: ``K`` from the seed (the battery's six seeds take
    5, 7, 13, 3, 9, 1: OverLoCK's sizes and the edge cases), the rest drawn: maps from ``K`` to
    ``K + 6`` (``K + 2`` for ``K > 7``; often non-square), widths 8 .. 32 (non powers of two too).
    Sized for the interpreter: the larger the window, the smaller the batch, map and widths (every
    odd ``K`` up to 17 is checked by tests/kernels/test_contmix.py)."""
    gen = torch.Generator().manual_seed(seed)

    def pick(*options):
        return options[torch.randint(len(options), (1,), generator=gen).item()]

    k = WINDOWS[seed % len(WINDOWS)]
    if k <= 7:
        h, w = k + pick(0, 1, 2, 3, 6), k + pick(0, 1, 2, 3, 6)
        b, g, c, cv = pick(1, 2), pick(1, 2, 3), pick(8, 14, 16, 20, 32), pick(8, 12, 16, 20)
    else:
        h, w = k + pick(0, 1), k + pick(0, 2)
        b, g, c, cv = 1, 1, pick(8, 14), pick(8, 12)
    return problem(b, g, h, w, c, cv, k, gen)


SPEC = register(
    KernelSpec(
        name="contmix",
        make_problem=make_problem,
        reference=contmix_reference,
        public=contmix,
        differentiable=(True, True, True, True, True),
    )
)

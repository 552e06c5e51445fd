"""InfSA's entries in the kernel registry (pure and linear): random problems for the kernel battery."""

from __future__ import annotations

from collections.abc import Callable

import torch

from attnzoo.kernels.infinite_attention.op import infsa_linear, infsa_pure
from attnzoo.kernels.infinite_attention.reference import infsa_linear_reference, infsa_pure_reference
from attnzoo.kernels.registry import KernelSpec, Problem, register


def make_problem(seed: int) -> Problem:
    """q, k, v of shape [BH, N, D] (N often not a multiple of the 16..64 tiles) from the seed.

    Args ``(scale, eps)``: the references' defaults, ``head_dim ** -0.5`` and ``1e-6``.
    """
    gen = torch.Generator().manual_seed(seed)

    def pick(*options):
        return options[torch.randint(len(options), (1,), generator=gen).item()]

    bh, n = pick(1, 2, 3), pick(1, 5, 17, 37, 70, 100)
    dqk, dv = pick(8, 16, 24, 32), pick(8, 16, 20)

    def t(*shape):
        return torch.randn(*shape, generator=gen)

    return [t(bh, n, dqk), t(bh, n, dqk), t(bh, n, dv)], (dqk**-0.5, 1e-6)


def _without_rho(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``fn(q, k, v, scale, eps)`` for a reference or public op: the Triton ops leave rho to the caller."""

    def run(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, eps: float) -> torch.Tensor:
        return fn(q, k, v, scale=scale, eps=eps)

    return run


SPECS = [
    register(
        KernelSpec(
            name=name,
            make_problem=make_problem,
            reference=_without_rho(reference),
            public=_without_rho(public),
            differentiable=(True, True, True),
        )
    )
    for name, reference, public in (
        ("infsa_pure", infsa_pure_reference, infsa_pure),
        ("infsa_linear", infsa_linear_reference, infsa_linear),
    )
]

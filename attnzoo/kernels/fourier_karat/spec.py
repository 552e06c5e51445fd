"""Fourier-KArAt's entry in the kernel registry: random problems for the kernel battery."""

from __future__ import annotations

import torch

from attnzoo.kernels.fourier_karat.reference import fourier_karat_reference
from attnzoo.kernels.registry import KernelSpec, Problem, register


def make_problem(seed: int) -> Problem:
    """q, k ``[BH, N, D]`` and coef ``[H, 2G + 1, N, R]`` (N often not a multiple of the tiles, R below
    the 16-wide tile, G from 1 to 4) from the seed; args ``(scale,)``."""
    gen = torch.Generator().manual_seed(seed)

    def pick(*options):
        return options[torch.randint(len(options), (1,), generator=gen).item()]

    heads, batch, n = pick(1, 2, 3), pick(1, 2), pick(1, 5, 17, 37, 70)
    d, r, grid = pick(8, 16, 24), pick(4, 12, 16), pick(1, 2, 3, 4)
    q = torch.randn(batch * heads, n, d, generator=gen)
    k = torch.randn(batch * heads, n, d, generator=gen)
    coef = torch.randn(heads, 2 * grid + 1, n, r, generator=gen) / (2 * grid * n) ** 0.5
    return [q, k, coef], (d**-0.5,)


def _reference(q: torch.Tensor, k: torch.Tensor, coef: torch.Tensor, scale: float) -> torch.Tensor:
    """The reference on the op's flat ``[B * H, N, D]`` layout (head = row index mod H)."""
    heads = coef.shape[0]
    p = fourier_karat_reference(q.unflatten(0, (-1, heads)), k.unflatten(0, (-1, heads)), coef, scale)
    return p.flatten(0, 1)


SPEC = register(
    KernelSpec(
        name="fourier_karat",
        make_problem=make_problem,
        reference=_reference,
        differentiable=(True, True, True),
    )
)

"""Fourier-KArAt's entry in the kernel registry: random problems for the kernel battery."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from attnzoo.kernels.fourier_karat.op import fourier_karat
from attnzoo.kernels.fourier_karat.reference import fourier_karat_reference
from attnzoo.kernels.registry import KernelSpec, Problem, register


def make_problem(seed: int) -> Problem:
    """q, k ``[B, H, N, D]`` and coef ``[H, 2G + 1, N, R]`` (N often not a multiple of the tiles, R below
    the 16-wide tile, G from 1 to 4) from the seed; args ``(scale,)``."""
    gen = torch.Generator().manual_seed(seed)

    def pick(*options):
        return options[torch.randint(len(options), (1,), generator=gen).item()]

    heads, batch, n = pick(1, 2, 3), pick(1, 2), pick(1, 5, 17, 37, 70)
    d, r, grid = pick(8, 16, 24), pick(4, 12, 16), pick(1, 2, 3, 4)
    q = torch.randn(batch, heads, n, d, generator=gen)
    k = torch.randn(batch, heads, n, d, generator=gen)
    coef = torch.randn(heads, 2 * grid + 1, n, r, generator=gen) / (2 * grid * n) ** 0.5
    return [q, k, coef], (d**-0.5,)


def _rows(t: torch.Tensor) -> torch.Tensor:
    """``[..., N, X]`` -> ``[rows, N, X]``: the Triton op's flat layout (head = row index mod H)."""
    return t.reshape(-1, *t.shape[-2:])


def _op_inputs(tensors: Sequence[torch.Tensor], args: tuple[Any, ...]) -> tuple[Any, ...]:
    q, k, coef = tensors
    return _rows(q), _rows(k), coef, *args


def _flat_result(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``fn`` (the reference or the public op) with its ``[..., H, N, R]`` result in the op's flat
    ``[B * H, N, R]`` layout."""

    def run(q: torch.Tensor, k: torch.Tensor, coef: torch.Tensor, scale: float) -> torch.Tensor:
        return _rows(fn(q, k, coef, scale))

    return run


SPEC = register(
    KernelSpec(
        name="fourier_karat",
        make_problem=make_problem,
        reference=_flat_result(fourier_karat_reference),
        public=_flat_result(fourier_karat),
        differentiable=(True, True, True),
        op_inputs=_op_inputs,
        own_dtype=(2,),  # coef: fp32 beside autocast's 16-bit q, k
    )
)

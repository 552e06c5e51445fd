"""MALA / InLine linear attention's entry in the kernel registry: random problems for the kernel battery."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from attnzoo.kernels.linear_attention.op import linear_attention
from attnzoo.kernels.linear_attention.reference import KINDS, linear_attention_reference
from attnzoo.kernels.registry import KernelSpec, Problem, register

# (leading dims, N) per seed (even seeds MALA, odd InLine): N ragged against the 16..64 token tiles,
# several reduction chunks under the interpreter (op.INTERPRETER_TILES) for seeds 0 and 1, one token,
# no leading dims, exactly one tile.
SHAPES = (((2,), 333), ((3,), 211), ((2, 1, 3), 97), ((), 1), ((2, 2), 40), ((1,), 64))


def rotate_pairs(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """``x`` with channel pairs ``(i, i + D // 2)`` rotated by random per-token angles, as RoPE rotates
    MALA's positive q, k (the result has both signs; its norms are ``x``'s)."""
    half = x.shape[-1] // 2
    theta = torch.rand((*x.shape[:-1], half), generator=gen) * 6.2832
    a, b = x[..., :half], x[..., half : 2 * half]
    rotated = (a * theta.cos() - b * theta.sin(), a * theta.sin() + b * theta.cos(), x[..., 2 * half :])
    return torch.cat(rotated, dim=-1)


def problem(
    kind: str, lead: tuple[int, ...], n: int, d: int, dv: int, gen: torch.Generator
) -> list[torch.Tensor]:
    """``[q, k, v, zq, zk]`` of one shape. MALA: ``zq``, ``zk`` = ``elu(x) + 1`` (positive, as MALA
    makes them, so ``z > 0``) and ``q``, ``k`` their pairwise rotations; InLine: all five Gaussian."""

    def t(width):
        return torch.randn(*lead, n, width, generator=gen)

    if kind == "mala":
        zq, zk = F.elu(t(d)) + 1, F.elu(t(d)) + 1
        return [rotate_pairs(zq, gen), rotate_pairs(zk, gen), t(dv), zq, zk]
    return [t(d), t(d), t(dv), t(d), t(d)]


def make_problem(seed: int) -> Problem:
    """Even seeds MALA, odd seeds InLine; leading dims and N from :data:`SHAPES`, D and Dv (often
    different, not always powers of two) drawn. Args ``(kind, scale, eps)``: ``D ** -0.5`` (0.3 for
    seeds 4, 5) and 1e-6."""
    gen = torch.Generator().manual_seed(seed)

    def pick(options):
        return options[torch.randint(len(options), (1,), generator=gen).item()]

    kind = KINDS[seed % 2]
    d, dv = pick((8, 16, 24, 32)), pick((8, 12, 20, 32))
    lead, n = SHAPES[seed % len(SHAPES)]
    tensors = problem(kind, lead, n, d, dv, gen)
    scale = 0.3 if seed in (4, 5) else d**-0.5
    return tensors, (kind, scale, 1e-6)


def _positional(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``fn`` (the reference or the public op) with positional arguments, as the registry calls it."""

    def run(
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        zq: torch.Tensor,
        zk: torch.Tensor,
        kind: str,
        scale: float,
        eps: float,
    ) -> torch.Tensor:
        return fn(q, k, v, zq, zk, kind=kind, scale=scale, eps=eps)

    return run


SPEC = register(
    KernelSpec(
        name="linear_attention",
        make_problem=make_problem,
        reference=_positional(linear_attention_reference),
        public=_positional(linear_attention),
        differentiable=(True,) * 5,
    )
)

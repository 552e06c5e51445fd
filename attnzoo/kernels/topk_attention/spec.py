"""Top-k attention's entry in the kernel registry: random problems for the kernel battery."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from attnzoo.kernels.registry import KernelSpec, Problem, register
from attnzoo.kernels.topk_attention.op import topk_attention
from attnzoo.kernels.topk_attention.reference import topk_attention_reference


def make_problem(seed: int) -> Problem:
    """Random batch, heads, token counts (``M <= N``, often ``M = N - 1`` as Sparsifiner's patch rows
    beside the cls token), widths (non powers of two too) and ``K`` from 1 to ``N``, with distinct
    indices per row (the top-k of random scores).

    Tensors ``[q, k, v, idx]`` (``idx`` int64), args ``(scale,)``.
    """
    gen = torch.Generator().manual_seed(seed)

    def pick(*options):
        return options[torch.randint(len(options), (1,), generator=gen).item()]

    b, h = pick(1, 2), pick(1, 2, 3)
    n = pick(5, 9, 17, 24)
    m = pick(n, n - 1, n - 1, max(1, n // 3))
    d, dv = pick(8, 12, 16, 20), pick(8, 16, 20, 12)
    topk = pick(1, 3, max(1, n // 4), n - 1, n)

    def t(*shape):
        return torch.randn(*shape, generator=gen)

    idx = torch.topk(t(b, h, m, n), topk, dim=-1).indices
    return [t(b, h, m, d), t(b, h, n, d), t(b, h, n, dv), idx], (d**-0.5,)


def _op_inputs(tensors: Sequence[torch.Tensor], args: tuple[Any, ...]) -> tuple[Any, ...]:
    """The op takes a contiguous int32 index."""
    q, k, v, idx = tensors
    return q, k, v, idx.to(torch.int32).contiguous(), *args


def _keys(tensors: Sequence[torch.Tensor], args: tuple[Any, ...]) -> int:
    """Key indices name rows of ``k`` ``[B, H, N, D]``."""
    return tensors[1].shape[2]


SPEC = register(
    KernelSpec(
        name="topk_attention",
        make_problem=make_problem,
        reference=topk_attention_reference,
        public=topk_attention,
        differentiable=(True, True, True, False),
        op_inputs=_op_inputs,
        indices={3: _keys},
    )
)

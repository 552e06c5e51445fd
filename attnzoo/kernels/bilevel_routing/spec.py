"""Routed attention's entry in the kernel registry: random problems for the kernel battery."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from attnzoo.kernels.bilevel_routing.op import bilevel_routing_attention
from attnzoo.kernels.bilevel_routing.reference import (
    bilevel_routing,
    bilevel_routing_attention_reference,
    region_grid,
)
from attnzoo.kernels.registry import KernelSpec, Problem, register


def make_problem(seed: int) -> Problem:
    """Random map size (divisible or not by the region grid), heads, dims, n_win and k.

    Tensors ``[q, k, v, idx]`` (``idx`` routed by :func:`bilevel_routing`), args ``((rh, rw), scale)``.
    """
    gen = torch.Generator().manual_seed(seed)

    def pick(*options):
        return options[torch.randint(len(options), (1,), generator=gen).item()]

    b, m = pick(1, 2), pick(1, 2, 3)
    n_win = pick(2, 3, 4)
    h, w = pick(3, 5, 6, 8, 9), pick(4, 6, 7, 9)
    dqk, dv = pick(8, 16, 12), pick(8, 16, 20)
    rh, rw, nrh, nrw = region_grid(h, w, n_win)
    topk = pick(1, 2, 3, nrh * nrw)

    def t(*shape):
        return torch.randn(*shape, generator=gen)

    q, k, v = t(b, m, h, w, dqk), t(b, m, h, w, dqk), t(b, m, h, w, dv)
    scale = (m * dqk) ** -0.5
    flat = lambda x: x.permute(0, 2, 3, 1, 4).reshape(b, h, w, -1)  # noqa: E731
    idx = bilevel_routing(flat(q), flat(k), (rh, rw), topk, scale)
    return [q, k, v, idx], ((rh, rw), scale)


def _op_inputs(tensors: Sequence[torch.Tensor], args: tuple[Any, ...]) -> tuple[Any, ...]:
    """The op takes an int32 index and the region size as two ints."""
    q, k, v, idx = tensors
    (rh, rw), scale = args
    return q, k, v, idx.to(torch.int32), rh, rw, scale


def _regions(tensors: Sequence[torch.Tensor], args: tuple[Any, ...]) -> int:
    """Routing indices name regions: ``idx`` is ``[B, R, k]``."""
    return tensors[3].shape[1]


SPEC = register(
    KernelSpec(
        name="bilevel_routing_attention",
        make_problem=make_problem,
        reference=bilevel_routing_attention_reference,
        public=bilevel_routing_attention,
        differentiable=(True, True, True, False),
        op_inputs=_op_inputs,
        indices={3: _regions},
    )
)

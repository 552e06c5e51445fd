"""Halo attention's entry in the kernel registry: random problems for the kernel battery."""

from __future__ import annotations

import torch

from attnzoo.kernels.halo_attention.op import halo_attention
from attnzoo.kernels.halo_attention.reference import halo_attention_reference
from attnzoo.kernels.registry import KernelSpec, Problem, register


def make_problem(seed: int) -> Problem:
    """A random halo problem: block sizes, halo, heads, dims and grid drawn from the seed.

    Tensors ``[q, k, v, qrh, qrw]``, args ``(block_q, block_kv, win, scale)``.
    """
    gen = torch.Generator().manual_seed(seed)

    def pick(*options):
        return options[torch.randint(len(options), (1,), generator=gen).item()]

    block_kv = pick(2, 3, 4, 5)
    block_q = pick(block_kv, block_kv // 2) if block_kv % 2 == 0 else block_kv
    halo = pick(0, 1, 2)
    win = block_kv + 2 * halo
    bh, nbh, nbw = pick(1, 2, 3), pick(1, 2), pick(1, 2, 3)
    dqk, dv = pick(4, 8, 16, 20), pick(4, 8, 12, 16)
    hq, wq = nbh * block_q, nbw * block_q
    hk, wk = nbh * block_kv + 2 * halo, nbw * block_kv + 2 * halo

    def t(*shape):
        return torch.randn(*shape, generator=gen)

    tensors = [
        t(bh, hq, wq, dqk),
        t(bh, hk, wk, dqk),
        t(bh, hk, wk, dv),
        t(bh, hq, wq, 2 * win - 1),
        t(bh, hq, wq, 2 * win - 1),
    ]
    return tensors, (block_q, block_kv, win, dqk**-0.5)


SPEC = register(
    KernelSpec(
        name="halo_attention",
        make_problem=make_problem,
        reference=halo_attention_reference,
        public=halo_attention,
        differentiable=(True, True, True, True, True),
    )
)

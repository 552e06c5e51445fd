"""Routed attention's public entry point (checks, dispatch) and its Triton op, forward + backward."""

from __future__ import annotations

import math

import torch

from attnzoo.kernels.bilevel_routing.reference import check_inputs, routed_attention
from attnzoo.kernels.common.host import run_op
from attnzoo.kernels.dispatch import triton_available, use_triton

__all__ = ["bilevel_routing_attention"]


def _supported(q: torch.Tensor, v: torch.Tensor) -> bool:
    return (
        q.dtype in (torch.float16, torch.bfloat16, torch.float32)
        and q.shape[-1] <= 128
        and v.shape[-1] <= 128
    )


def bilevel_routing_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    idx: torch.Tensor,
    region_size: tuple[int, int],
    scale: float,
    *,
    check_range: bool = True,
) -> torch.Tensor:
    """Routed attention through the dispatch rule (Triton kernel or the gather reference).

    Routing indices outside ``[0, regions)`` raise a ValueError on both paths (one min / max, one
    sync; not while a graph is compiled or exported, where the kernels mask them instead of reading
    out of bounds). ``check_range=False`` skips that sync for indices in range by construction (a
    ``torch.topk`` over the regions): a sync per layer stalls the GPU between layers.
    """
    grid = check_inputs(q, k, v, idx, region_size, check_range)
    if use_triton(q, k, v, idx, supported=_supported(q, v), op="bilevel_routing_attention"):
        rh, rw = region_size
        q, k, v = (t.contiguous() for t in (q, k, v))
        out, _ = run_op(
            "bilevel_routing_attention",
            q,
            k,
            v,
            idx.to(torch.int32).contiguous(),
            int(rh),
            int(rw),
            float(scale),
        )
        return out
    return routed_attention(q, k, v, idx, grid, scale)


if triton_available():
    from torch.library import wrap_triton

    from attnzoo.kernels.bilevel_routing.kernels import (
        bra_bwd_dkdv_kernel,
        bra_bwd_dq_kernel,
        bra_fwd_kernel,
        bra_table_kernel,
    )
    from attnzoo.kernels.common.chunks import cdiv
    from attnzoo.kernels.common.host import define_op, pow2, precision, tile

    def _geometry(q: torch.Tensor, idx: torch.Tensor, region_h: int, region_w: int) -> dict:
        b, m, h, w, _ = q.shape
        nrw = math.ceil(w / region_w)
        nr = math.ceil(h / region_h) * nrw
        return dict(
            H=h,
            W=w,
            NR=nr,
            NRW=nrw,
            RH=region_h,
            RW=region_w,
            T=region_h * region_w,
            TOPK=idx.shape[-1],
            HEADS=m,
            CAP=nr,
        )

    def _widths(q: torch.Tensor, v: torch.Tensor) -> dict:
        return dict(BD=pow2(q.shape[-1], cap=128), BDV=pow2(v.shape[-1], cap=128), PRECISION=precision(q))

    def _own_tiling(t: int, nr: int) -> tuple[int, int, int, int]:
        """``(block, TP, NB, programs per slice)`` of the own side: regions shorter than a tile are
        packed whole (``TP`` token slots each, ``block // TP`` per program), longer ones split into
        ``NB`` blocks."""
        block = tile(t)
        if t < block:
            tp = pow2(t, floor=1)
            return block, tp, 1, cdiv(nr, block // tp)
        nb = cdiv(t, block)
        return block, block, nb, nr * nb

    def _tables(idx: torch.Tensor, geo: dict, group: int, directions: range) -> tuple[torch.Tensor, ...]:
        """``(count, list, mult)`` of :func:`bra_table_kernel`, ``[directions.stop, B, NG, ...]``, for
        the directions asked (0: forward / dQ, 1: dK / dV), in one launch; the others stay unwritten."""
        b, nr = idx.shape[0], geo["NR"]
        ng = cdiv(nr, group)
        count = idx.new_empty((directions.stop, b, ng))
        lists = idx.new_empty((directions.stop, b, ng, nr))
        mult = idx.new_empty((directions.stop, b, ng, nr, group))
        br = pow2(nr, cap=64)
        jb = min(pow2(geo["TOPK"], floor=1), max(1, 4096 // (br * group)))  # <= 4096 compares a step
        wrap_triton(bra_table_kernel)[(len(directions) * ng, b)](
            idx, count, lists, mult, nr, geo["TOPK"], nr, directions.start, G=group, BR=br, JB=jb
        )
        return count, lists, mult

    def _forward(
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        idx: torch.Tensor,
        region_h: int,
        region_w: int,
        scale: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        geo = _geometry(q, idx, region_h, region_w)
        b, m, h, w, dqk = q.shape
        dv = v.shape[-1]
        out = torch.empty((b, m, h, w, dv), device=q.device, dtype=q.dtype)
        lse = torch.empty((b, m, h, w), device=q.device, dtype=torch.float32)
        bq, tp, nb, programs = _own_tiling(geo["T"], geo["NR"])
        packed = bq > tp
        # One region per program reads its idx row; the table arguments are then never read.
        count, lists, mult = _tables(idx, geo, bq // tp, range(0, 1)) if packed else (idx, idx, idx)
        wrap_triton(bra_fwd_kernel)[(programs, b * m)](
            q, k, v, idx, count, lists, mult, out, lse, scale, **geo, DQK=dqk, DV=dv, NB=nb,
            BQ=bq, BK=tile(geo["T"] * geo["TOPK"] * (bq // tp)), TP=tp, **_widths(q, v), TABLE=packed,
        )  # fmt: skip
        return out, lse

    def _backward(
        grad_out: torch.Tensor,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        idx: torch.Tensor,
        out: torch.Tensor,
        lse: torch.Tensor,
        region_h: int,
        region_w: int,
        scale: float,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        geo = _geometry(q, idx, region_h, region_w)
        b, m, h, w, dqk = q.shape
        dv = v.shape[-1]
        grad_out = grad_out.contiguous()
        delta = torch.empty_like(lse)
        dq = torch.empty_like(q)
        dk = torch.empty_like(k)
        dvv = torch.empty_like(v)
        block, tp, nb, programs = _own_tiling(geo["T"], geo["NR"])
        packed = block > tp
        # One launch builds the dK / dV lists and, when query regions are packed, the dQ lists (else
        # the unwritten count[0] / lists[0] / mult[0] are never read).
        count, lists, mult = _tables(idx, geo, block // tp, range(0 if packed else 1, 2))
        wrap_triton(bra_bwd_dq_kernel)[(programs, b * m)](
            q, k, v, idx, count[0], lists[0], mult[0], out, grad_out, lse, delta, dq, scale, **geo,
            DQK=dqk, DV=dv, NB=nb, BQ=block, BK=tile(geo["T"] * geo["TOPK"] * (block // tp)), TP=tp,
            **_widths(q, v), TABLE=packed,
        )  # fmt: skip
        wrap_triton(bra_bwd_dkdv_kernel)[(programs, b * m)](
            q, k, v, count[1], lists[1], mult[1], grad_out, lse, delta, dk, dvv, scale, **geo,
            DQK=dqk, DV=dv, NB=nb, BQ=tile(geo["T"] * geo["NR"]), BK=block, TP=tp, **_widths(q, v),
        )  # fmt: skip
        return dq, dk, dvv

    def _forward_fake(q, k, v, idx, region_h, region_w, scale):
        return q.new_empty((*q.shape[:4], v.shape[-1])), q.new_empty(q.shape[:4], dtype=torch.float32)

    def _backward_fake(grad_out, q, k, v, idx, out, lse, region_h, region_w, scale):
        return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)

    define_op(
        "bilevel_routing_attention",
        forward=_forward,
        backward=_backward,
        forward_fake=_forward_fake,
        backward_fake=_backward_fake,
    )

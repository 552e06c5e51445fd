"""Routed attention's public entry point (checks, dispatch) and its Triton op, forward + backward."""

from __future__ import annotations

import math

import torch

from attnzoo.kernels.bilevel_routing.reference import check_inputs, routed_attention
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
) -> torch.Tensor:
    """Routed attention through the dispatch rule (Triton kernel or the gather reference).

    Routing indices outside ``[0, regions)`` raise a ValueError on both paths (one min / max, one
    sync; not while a graph is compiled or exported, where the kernels mask them instead of reading
    out of bounds).
    """
    grid = check_inputs(q, k, v, idx, region_size)
    if use_triton(q, k, v, idx, supported=_supported(q, v)):
        rh, rw = region_size
        q, k, v = (t.contiguous() for t in (q, k, v))
        out, _ = torch.ops.attnzoo.bilevel_routing_attention(
            q, k, v, idx.to(torch.int32).contiguous(), int(rh), int(rw), float(scale)
        )
        return out
    return routed_attention(q, k, v, idx, grid, scale)


if triton_available():
    import triton
    from torch.library import wrap_triton

    from attnzoo.kernels.bilevel_routing.kernels import bra_bwd_dkdv_kernel, bra_bwd_dq_kernel, bra_fwd_kernel
    from attnzoo.kernels.common.host import define_op, invert_index, pow2, precision, tile

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
        )

    def _widths(q: torch.Tensor, v: torch.Tensor) -> dict:
        return dict(BD=pow2(q.shape[-1], cap=128), BDV=pow2(v.shape[-1], cap=128), PRECISION=precision(q))

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
        bq = tile(geo["T"])
        nqb = triton.cdiv(geo["T"], bq)
        wrap_triton(bra_fwd_kernel)[(geo["NR"] * nqb, b * m)](
            q, k, v, idx, out, lse, scale, **geo, DQK=dqk, DV=dv, NQB=nqb,
            BQ=bq, BK=tile(geo["T"] * geo["TOPK"]), **_widths(q, v),
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
        delta = (grad_out.float() * out.float()).sum(-1).contiguous()
        dq = torch.empty_like(q)
        dk = torch.empty_like(k)
        dvv = torch.empty_like(v)
        t = geo["T"]
        bq = tile(t)
        nqb = triton.cdiv(t, bq)
        wrap_triton(bra_bwd_dq_kernel)[(geo["NR"] * nqb, b * m)](
            q, k, v, idx, grad_out, lse, delta, dq, scale, **geo, DQK=dqk, DV=dv, NQB=nqb,
            BQ=bq, BK=tile(t * geo["TOPK"]), **_widths(q, v),
        )  # fmt: skip
        # For each key region, the query regions that routed to it.
        src, off = invert_index(idx.flatten(1), idx.shape[-1], geo["NR"])
        bk = tile(t)
        nkb = triton.cdiv(t, bk)
        wrap_triton(bra_bwd_dkdv_kernel)[(geo["NR"] * nkb, b * m)](
            q, k, v, src, off, grad_out, lse, delta, dk, dvv, scale, **geo, DQK=dqk, DV=dv, NKB=nkb,
            BQ=tile(t * geo["TOPK"]), BK=bk, **_widths(q, v),
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

"""Bi-level routing attention (BiFormer): region-level top-k routing, then token attention over the
tokens of the selected regions.

Geometry. A ``H x W`` map is cut into a grid of ``region_h x region_w`` regions, row-major, the last
row / column of regions possibly cut short by the map border (``region_grid``). Tokens outside the
map (the bottom / right padding up to whole regions) never exist as keys: they are masked out of the
softmax and left out of the region means, and regions are never empty, so every query has keys.

Routing (:func:`bilevel_routing`): region query / key = the mean of the region's q / k over its tokens
(full channel width, shared by all heads, no gradient), affinity = ``(q_r * scale) @ k_r^T``, and each
query region keeps the indices of its ``topk`` highest-affinity regions (itself not forced in).

Attention (:func:`bilevel_routing_attention`), per head: every query token of region ``r`` attends, by
one softmax, to all tokens of the regions ``idx[b, r, :]``. Layout:

- ``q``, ``k``: ``[B, M, H, W, Dqk]`` and ``v``: ``[B, M, H, W, Dv]`` (M heads, unpadded maps);
- ``idx``: ``[B, R, K]`` integer region indices, shared by the heads of one image.

The reference gathers the K selected regions into a ``[B, M, R, K * T, D]`` copy as the official
``torch.gather`` path does. The Triton kernels read the selected regions straight from ``k`` / ``v``
through the routing table (no gathered copy, no padded copy), keep an online softmax in registers,
and run a deterministic backward without atomics: dQ per query region, dK / dV per key region over
the query regions that routed to it (an inverted routing table built with one sort).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from attnzoo.kernels.dispatch import triton_available, use_triton

__all__ = [
    "bilevel_routing",
    "bilevel_routing_attention",
    "bilevel_routing_attention_reference",
    "region_grid",
]


def region_grid(h: int, w: int, n_win: int) -> tuple[int, int, int, int]:
    """``(region_h, region_w, regions_y, regions_x)`` for an ``h x w`` map cut into at most
    ``n_win x n_win`` regions of ``ceil(h / n_win) x ceil(w / n_win)`` tokens.

    When ``n_win`` divides the sides this is BiFormer's exact grid. Otherwise regions keep the size
    the official ``auto_pad`` gives them, and regions that would hold only padding are dropped.
    """
    rh, rw = math.ceil(h / n_win), math.ceil(w / n_win)
    return rh, rw, math.ceil(h / rh), math.ceil(w / rw)


def _grid(h: int, w: int, region_size: tuple[int, int]) -> tuple[int, int, int, int]:
    rh, rw = region_size
    if rh < 1 or rw < 1:
        raise ValueError(f"region size must be positive, got {region_size}")
    return rh, rw, math.ceil(h / rh), math.ceil(w / rw)


def _to_regions(x: torch.Tensor, rh: int, rw: int, nrh: int, nrw: int) -> torch.Tensor:
    """``[..., H, W, C]`` -> ``[..., R, T, C]``, zero-padded bottom / right to whole regions."""
    *lead, h, w, c = x.shape
    x = F.pad(x, (0, 0, 0, nrw * rw - w, 0, nrh * rh - h))
    x = x.reshape(*lead, nrh, rh, nrw, rw, c).transpose(-4, -3)
    return x.reshape(*lead, nrh * nrw, rh * rw, c)


def _from_regions(x: torch.Tensor, h: int, w: int, rh: int, rw: int, nrh: int, nrw: int) -> torch.Tensor:
    """Inverse of :func:`_to_regions` (crops the padding)."""
    *lead, _, _, c = x.shape
    x = x.reshape(*lead, nrh, nrw, rh, rw, c).transpose(-4, -3)
    return x.reshape(*lead, nrh * rh, nrw * rw, c)[..., :h, :w, :]


def _valid_tokens(h: int, w: int, rh: int, rw: int, nrh: int, nrw: int, device) -> torch.Tensor:
    """``[R, T]`` bool: which region slots hold a real token (not bottom / right padding)."""
    ys = torch.arange(nrh * rh, device=device) < h
    xs = torch.arange(nrw * rw, device=device) < w
    mask = (ys[:, None] & xs[None, :])[..., None]
    return _to_regions(mask, rh, rw, nrh, nrw)[..., 0]


def bilevel_routing(
    q: torch.Tensor, k: torch.Tensor, region_size: tuple[int, int], topk: int, scale: float
) -> torch.Tensor:
    """Top-k region routing: ``[B, R, min(topk, R)]`` int64 region indices for ``q``, ``k`` of shape
    ``[B, H, W, C]`` (all heads' channels). Padding is left out of the region means; no gradient."""
    if q.dim() != 4 or k.shape != q.shape:
        raise ValueError(f"routing expects q and k of equal shape [B, H, W, C], got {q.shape} / {k.shape}")
    if topk < 1:
        raise ValueError(f"topk must be >= 1, got {topk}")
    _, h, w, _ = q.shape
    rh, rw, nrh, nrw = _grid(h, w, region_size)
    with torch.no_grad():
        q, k = q.detach(), k.detach()
        if nrh * rh == h and nrw * rw == w:
            q_r = _to_regions(q, rh, rw, nrh, nrw).mean(-2)
            k_r = _to_regions(k, rh, rw, nrh, nrw).mean(-2)
        else:
            count = _valid_tokens(h, w, rh, rw, nrh, nrw, q.device).sum(-1, keepdim=True).to(q.dtype)
            q_r = _to_regions(q, rh, rw, nrh, nrw).sum(-2) / count
            k_r = _to_regions(k, rh, rw, nrh, nrw).sum(-2) / count
        logits = (q_r * scale) @ k_r.transpose(-1, -2)  # [B, R, R]
        return torch.topk(logits, k=min(topk, nrh * nrw), dim=-1).indices


def _check_shapes(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, idx: torch.Tensor, region_size: tuple[int, int]
) -> tuple[int, int, int, int]:
    if q.dim() != 5 or k.dim() != 5 or v.dim() != 5:
        raise ValueError("bilevel_routing_attention expects q, k, v of shape [B, heads, H, W, D]")
    if k.shape != q.shape:
        raise ValueError(f"q and k shapes differ: {tuple(q.shape)} vs {tuple(k.shape)}")
    if v.shape[:4] != q.shape[:4]:
        raise ValueError(f"v {tuple(v.shape)} does not match q {tuple(q.shape)} on [B, heads, H, W]")
    b, _, h, w, _ = q.shape
    grid = _grid(h, w, region_size)
    nr = grid[2] * grid[3]
    if idx.dim() != 3 or idx.shape[0] != b or idx.shape[1] != nr or not 1 <= idx.shape[2] <= nr:
        raise ValueError(
            f"routing index must have shape [{b}, {nr}, k] with 1 <= k <= {nr}, got {tuple(idx.shape)}"
        )
    if idx.is_floating_point():
        raise ValueError("routing index must be an integer tensor")
    return grid


def bilevel_routing_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    idx: torch.Tensor,
    region_size: tuple[int, int],
    scale: float,
) -> torch.Tensor:
    """Plain-torch routed attention with an explicit gathered K / V copy (the official formulation)."""
    rh, rw, nrh, nrw = _check_shapes(q, k, v, idx, region_size)
    b, m, h, w, _ = q.shape
    q_r, k_r, v_r = (_to_regions(t, rh, rw, nrh, nrw) for t in (q, k, v))  # [B, M, R, T, D]
    idx = idx.long()
    batch = torch.arange(b, device=q.device)[:, None, None]
    k_sel = k_r.transpose(1, 2)[batch, idx]  # [B, R, K, M, T, D]
    v_sel = v_r.transpose(1, 2)[batch, idx]
    nr, topk, t = idx.shape[1], idx.shape[2], rh * rw
    k_sel = k_sel.permute(0, 3, 1, 2, 4, 5).reshape(b, m, nr, topk * t, -1)
    v_sel = v_sel.permute(0, 3, 1, 2, 4, 5).reshape(b, m, nr, topk * t, -1)
    valid = _valid_tokens(h, w, rh, rw, nrh, nrw, q.device)[idx].reshape(b, 1, nr, 1, topk * t)
    attn = (q_r * scale) @ k_sel.transpose(-1, -2)  # [B, M, R, T, K * T]
    attn = attn.masked_fill(~valid, float("-inf")).softmax(dim=-1)
    return _from_regions(attn @ v_sel, h, w, rh, rw, nrh, nrw)


def _supported(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> bool:
    return (
        q.dtype in (torch.float16, torch.bfloat16, torch.float32)
        and k.dtype == q.dtype
        and v.dtype == q.dtype
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
    """Routed attention through the dispatch rule (Triton kernel or the gather reference)."""
    _check_shapes(q, k, v, idx, region_size)
    if use_triton(q, k, v, supported=_supported(q, k, v)):
        rh, rw = region_size
        q, k, v = (t.contiguous() for t in (q, k, v))
        out, _ = torch.ops.attnzoo.bilevel_routing_attention(
            q, k, v, idx.to(torch.int32).contiguous(), int(rh), int(rw), float(scale)
        )
        return out
    return bilevel_routing_attention_reference(q, k, v, idx, region_size, scale)


if triton_available():
    import triton
    import triton.language as tl
    from torch.library import triton_op, wrap_triton

    def _pow2(n: int, floor: int = 16, cap: int = 64) -> int:
        return min(cap, max(floor, triton.next_power_of_2(n)))

    @triton.jit
    def _coords(tok, region, NRW, RH, RW):
        """Map coordinates of token ``tok`` (row-major inside its region) of region ``region``."""
        y = (region // NRW) * RH + tok // RW
        x = (region % NRW) * RW + tok % RW
        return y, x

    @triton.jit
    def _bra_fwd_kernel(
        Q, K, V, IDX, O, LSE, scale,
        H, W, NR, NRW, RH, RW, T, TOPK, HEADS, DQK, DV, NQB,
        BQ: tl.constexpr, BK: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr, PRECISION: tl.constexpr,
    ):  # fmt: skip
        pid = tl.program_id(0)
        bh = tl.program_id(1)
        r = pid // NQB
        b = bh // HEADS
        qi = (pid % NQB) * BQ + tl.arange(0, BQ)
        qy, qx = _coords(qi, r, NRW, RH, RW)
        q_mask = (qi < T) & (qy < H) & (qx < W)
        q_rows = (bh * H + qy) * W + qx
        d = tl.arange(0, BD)
        d_mask = d < DQK
        dv = tl.arange(0, BDV)
        dv_mask = dv < DV
        q = tl.load(Q + q_rows[:, None] * DQK + d[None, :], mask=q_mask[:, None] & d_mask[None, :], other=0.0)
        m_i = tl.full([BQ], float("-inf"), tl.float32)
        l_i = tl.zeros([BQ], tl.float32)
        acc = tl.zeros([BQ, BDV], tl.float32)
        nk = TOPK * T
        idx_base = (b * NR + r) * TOPK
        for start in range(0, nk, BK):
            kj = start + tl.arange(0, BK)
            in_range = kj < nk
            kr = tl.load(IDX + idx_base + kj // T, mask=in_range, other=0)
            ky, kx = _coords(kj % T, kr, NRW, RH, RW)
            k_mask = in_range & (ky < H) & (kx < W)
            k_rows = (bh * H + ky) * W + kx
            k = tl.load(
                K + k_rows[:, None] * DQK + d[None, :], mask=k_mask[:, None] & d_mask[None, :], other=0.0
            )
            s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
            s = tl.where(k_mask[None, :], s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, axis=1))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
            alpha = tl.exp(m_i - m_safe)
            p = tl.exp(s - m_safe[:, None])
            l_i = l_i * alpha + tl.sum(p, axis=1)
            v = tl.load(
                V + k_rows[:, None] * DV + dv[None, :], mask=k_mask[:, None] & dv_mask[None, :], other=0.0
            )
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
            m_i = m_new
        l_safe = tl.where(l_i == 0.0, 1.0, l_i)
        o = acc / l_safe[:, None]
        tl.store(
            O + q_rows[:, None] * DV + dv[None, :],
            o.to(O.dtype.element_ty),
            mask=q_mask[:, None] & dv_mask[None, :],
        )
        tl.store(LSE + q_rows, m_i + tl.log(l_safe), mask=q_mask)

    @triton.jit
    def _bra_bwd_dq_kernel(
        Q, K, V, IDX, DO, LSE, DELTA, DQ, scale,
        H, W, NR, NRW, RH, RW, T, TOPK, HEADS, DQK, DV, NQB,
        BQ: tl.constexpr, BK: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr, PRECISION: tl.constexpr,
    ):  # fmt: skip
        pid = tl.program_id(0)
        bh = tl.program_id(1)
        r = pid // NQB
        b = bh // HEADS
        qi = (pid % NQB) * BQ + tl.arange(0, BQ)
        qy, qx = _coords(qi, r, NRW, RH, RW)
        q_mask = (qi < T) & (qy < H) & (qx < W)
        q_rows = (bh * H + qy) * W + qx
        d = tl.arange(0, BD)
        d_mask = d < DQK
        dv = tl.arange(0, BDV)
        dv_mask = dv < DV
        q = tl.load(Q + q_rows[:, None] * DQK + d[None, :], mask=q_mask[:, None] & d_mask[None, :], other=0.0)
        do = tl.load(
            DO + q_rows[:, None] * DV + dv[None, :], mask=q_mask[:, None] & dv_mask[None, :], other=0.0
        )
        lse = tl.load(LSE + q_rows, mask=q_mask, other=0.0)
        delta = tl.load(DELTA + q_rows, mask=q_mask, other=0.0)
        dq = tl.zeros([BQ, BD], tl.float32)
        nk = TOPK * T
        idx_base = (b * NR + r) * TOPK
        for start in range(0, nk, BK):
            kj = start + tl.arange(0, BK)
            in_range = kj < nk
            kr = tl.load(IDX + idx_base + kj // T, mask=in_range, other=0)
            ky, kx = _coords(kj % T, kr, NRW, RH, RW)
            k_mask = in_range & (ky < H) & (kx < W)
            k_rows = (bh * H + ky) * W + kx
            k = tl.load(
                K + k_rows[:, None] * DQK + d[None, :], mask=k_mask[:, None] & d_mask[None, :], other=0.0
            )
            v = tl.load(
                V + k_rows[:, None] * DV + dv[None, :], mask=k_mask[:, None] & dv_mask[None, :], other=0.0
            )
            s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
            p = tl.exp(s - lse[:, None])
            p = tl.where(q_mask[:, None] & k_mask[None, :], p, 0.0)
            dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
            ds = p * (dp - delta[:, None])
            dq += tl.dot(ds.to(k.dtype), k, input_precision=PRECISION)
        tl.store(
            DQ + q_rows[:, None] * DQK + d[None, :],
            (dq * scale).to(DQ.dtype.element_ty),
            mask=q_mask[:, None] & d_mask[None, :],
        )

    @triton.jit
    def _bra_bwd_dkdv_kernel(
        Q, K, V, SRC, OFF, DO, LSE, DELTA, DK, DVV, scale,
        H, W, NR, NRW, RH, RW, T, TOPK, HEADS, DQK, DV, NKB,
        BQ: tl.constexpr, BK: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr, PRECISION: tl.constexpr,
    ):  # fmt: skip
        pid = tl.program_id(0)
        bh = tl.program_id(1)
        r = pid // NKB
        b = bh // HEADS
        kj = (pid % NKB) * BK + tl.arange(0, BK)
        ky, kx = _coords(kj, r, NRW, RH, RW)
        k_mask = (kj < T) & (ky < H) & (kx < W)
        k_rows = (bh * H + ky) * W + kx
        d = tl.arange(0, BD)
        d_mask = d < DQK
        dv = tl.arange(0, BDV)
        dv_mask = dv < DV
        k = tl.load(K + k_rows[:, None] * DQK + d[None, :], mask=k_mask[:, None] & d_mask[None, :], other=0.0)
        v = tl.load(
            V + k_rows[:, None] * DV + dv[None, :], mask=k_mask[:, None] & dv_mask[None, :], other=0.0
        )
        dk = tl.zeros([BK, BD], tl.float32)
        dvacc = tl.zeros([BK, BDV], tl.float32)
        first = tl.load(OFF + b * (NR + 1) + r)
        nq = (tl.load(OFF + b * (NR + 1) + r + 1) - first) * T
        src_base = b * NR * TOPK + first
        for start in range(0, nq, BQ):
            qi = start + tl.arange(0, BQ)
            in_range = qi < nq
            qr = tl.load(SRC + src_base + qi // T, mask=in_range, other=0)
            qy, qx = _coords(qi % T, qr, NRW, RH, RW)
            q_mask = in_range & (qy < H) & (qx < W)
            q_rows = (bh * H + qy) * W + qx
            q = tl.load(
                Q + q_rows[:, None] * DQK + d[None, :], mask=q_mask[:, None] & d_mask[None, :], other=0.0
            )
            do = tl.load(
                DO + q_rows[:, None] * DV + dv[None, :], mask=q_mask[:, None] & dv_mask[None, :], other=0.0
            )
            lse = tl.load(LSE + q_rows, mask=q_mask, other=0.0)
            delta = tl.load(DELTA + q_rows, mask=q_mask, other=0.0)
            s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
            p = tl.exp(s - lse[:, None])
            p = tl.where(q_mask[:, None] & k_mask[None, :], p, 0.0)
            dvacc += tl.dot(tl.trans(p.to(do.dtype)), do, input_precision=PRECISION)
            dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
            ds = p * (dp - delta[:, None])
            dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PRECISION)
        tl.store(
            DK + k_rows[:, None] * DQK + d[None, :],
            (dk * scale).to(DK.dtype.element_ty),
            mask=k_mask[:, None] & d_mask[None, :],
        )
        tl.store(
            DVV + k_rows[:, None] * DV + dv[None, :],
            dvacc.to(DVV.dtype.element_ty),
            mask=k_mask[:, None] & dv_mask[None, :],
        )

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

    def _precision(q: torch.Tensor) -> str:
        return "ieee" if q.dtype == torch.float32 else "tf32"

    @triton_op("attnzoo::bilevel_routing_attention", mutates_args={})
    def _bra_op(
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
        bq = _pow2(geo["T"])
        nqb = triton.cdiv(geo["T"], bq)
        wrap_triton(_bra_fwd_kernel)[(geo["NR"] * nqb, b * m)](
            q, k, v, idx, out, lse, scale, **geo, DQK=dqk, DV=dv, NQB=nqb,
            BQ=bq, BK=_pow2(geo["T"] * geo["TOPK"]), BD=_pow2(dqk, cap=128), BDV=_pow2(dv, cap=128),
            PRECISION=_precision(q),
        )  # fmt: skip
        return out, lse

    def _inverse_routing(idx: torch.Tensor, nr: int) -> tuple[torch.Tensor, torch.Tensor]:
        """For each key region, the query regions that selected it: ``src`` ``[B, R * K]`` (grouped
        by key region, ascending) and offsets ``[B, R + 1]`` into it."""
        b, _, topk = idx.shape
        flat = idx.reshape(b, -1).long()
        order = torch.argsort(flat, dim=1, stable=True)
        src = (order // topk).to(torch.int32)
        counts = torch.zeros(b, nr, dtype=torch.int64, device=idx.device)
        counts.scatter_add_(1, flat, torch.ones_like(flat))
        off = torch.cat([counts.new_zeros(b, 1), counts.cumsum(1)], dim=1).to(torch.int32)
        return src.contiguous(), off.contiguous()

    @triton_op("attnzoo::bilevel_routing_attention_backward", mutates_args={})
    def _bra_backward_op(
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
        meta = dict(BD=_pow2(dqk, cap=128), BDV=_pow2(dv, cap=128), PRECISION=_precision(q))
        t = geo["T"]
        bq = _pow2(t)
        nqb = triton.cdiv(t, bq)
        wrap_triton(_bra_bwd_dq_kernel)[(geo["NR"] * nqb, b * m)](
            q, k, v, idx, grad_out, lse, delta, dq, scale, **geo, DQK=dqk, DV=dv, NQB=nqb,
            BQ=bq, BK=_pow2(t * geo["TOPK"]), **meta,
        )  # fmt: skip
        src, off = _inverse_routing(idx, geo["NR"])
        bk = _pow2(t)
        nkb = triton.cdiv(t, bk)
        wrap_triton(_bra_bwd_dkdv_kernel)[(geo["NR"] * nkb, b * m)](
            q, k, v, src, off, grad_out, lse, delta, dk, dvv, scale, **geo, DQK=dqk, DV=dv, NKB=nkb,
            BQ=_pow2(t * geo["TOPK"]), BK=bk, **meta,
        )  # fmt: skip
        return dq, dk, dvv

    @_bra_op.register_fake
    def _bra_fake(q, k, v, idx, region_h, region_w, scale):
        return q.new_empty((*q.shape[:4], v.shape[-1])), q.new_empty(q.shape[:4], dtype=torch.float32)

    @_bra_backward_op.register_fake
    def _bra_backward_fake(grad_out, q, k, v, idx, out, lse, region_h, region_w, scale):
        return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)

    def _setup_context(ctx, inputs, output) -> None:
        q, k, v, idx, region_h, region_w, scale = inputs
        out, lse = output
        ctx.save_for_backward(q, k, v, idx, out, lse)
        ctx.meta = (region_h, region_w, scale)

    def _backward(ctx, grad_out: torch.Tensor, _grad_lse: torch.Tensor):
        q, k, v, idx, out, lse = ctx.saved_tensors
        dq, dk, dv = torch.ops.attnzoo.bilevel_routing_attention_backward(
            grad_out, q, k, v, idx, out, lse, *ctx.meta
        )
        return dq, dk, dv, None, None, None, None

    _bra_op.register_autograd(_backward, setup_context=_setup_context)

"""Blocked local ("halo") attention: each query block attends to its key block plus a halo.

Layout, per (batch * head) slice ``bh``:

- ``q``: ``[BH, Hq, Wq, Dqk]``, query grid cut into ``block_q x block_q`` blocks;
- ``k``, ``v``: ``[BH, Hk, Wk, D]``, already zero-padded by the halo, so block ``(by, bx)`` reads the
  ``win x win`` window whose top-left corner is ``(by * block_kv, bx * block_kv)``;
- ``qrh``, ``qrw``: ``[BH, Hq, Wq, 2 * win - 1]``, the products of each query with the height / width
  relative-position tables. The logit of query ``(i, j)`` (position inside its block) for window key
  ``(p, c)`` is ``scale * q.k + qrh[..., p - i + win - 1] + qrw[..., c - j + win - 1]`` (HaloNet's
  relative logits; timm's ``rel_logits_1d`` computes the same gather with pads and reshapes).

Padded keys are zero vectors that still take part in the softmax, exactly as in timm's HaloAttn.
The Triton kernel reads the windows straight from ``k``/``v`` (no unfolded copy), keeps the logits
in registers, and writes the relative-logit gradients without atomics (each query owns its row).
"""

from __future__ import annotations

import torch

from attnzoo.kernels.dispatch import triton_available, use_triton

__all__ = ["halo_attention", "halo_attention_reference"]


def _relative_index(block_q: int, win: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Index into the ``2 * win - 1`` relative table for every (query-in-block, window-key) pair."""
    i = torch.arange(block_q, device=device)
    p = torch.arange(win, device=device)
    rel = p[None, :] - i[:, None] + win - 1  # [block_q, win]
    idx_h = rel[:, None, :, None].expand(block_q, block_q, win, win).reshape(block_q * block_q, win * win)
    idx_w = rel[None, :, None, :].expand(block_q, block_q, win, win).reshape(block_q * block_q, win * win)
    return idx_h, idx_w


def _to_blocks(x: torch.Tensor, block: int) -> torch.Tensor:
    """[BH, H, W, C] -> [BH, nblocks, block * block, C], blocks in row-major order."""
    bh, h, w, c = x.shape
    x = x.reshape(bh, h // block, block, w // block, block, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(bh, (h // block) * (w // block), block * block, c)


def _from_blocks(x: torch.Tensor, nbh: int, nbw: int, block: int) -> torch.Tensor:
    """Inverse of :func:`_to_blocks`."""
    bh, _, _, c = x.shape
    x = x.reshape(bh, nbh, nbw, block, block, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(bh, nbh * block, nbw * block, c)


def _windows(x: torch.Tensor, win: int, step: int) -> torch.Tensor:
    """[BH, Hk, Wk, C] -> [BH, nblocks, win * win, C], overlapping windows with the given step."""
    bh, _, _, c = x.shape
    x = x.unfold(1, win, step).unfold(2, win, step)  # [BH, nbh, nbw, C, win, win]
    nb = x.shape[1] * x.shape[2]
    return x.permute(0, 1, 2, 4, 5, 3).reshape(bh, nb, win * win, c)


def _check_shapes(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    qrh: torch.Tensor,
    qrw: torch.Tensor,
    block_q: int,
    block_kv: int,
    win: int,
) -> tuple[int, int]:
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError("halo_attention expects q, k, v of shape [BH, H, W, D]")
    bh, hq, wq, _ = q.shape
    if hq % block_q or wq % block_q:
        raise ValueError(f"query grid {hq}x{wq} is not a multiple of block_q={block_q}")
    nbh, nbw = hq // block_q, wq // block_q
    halo2 = win - block_kv
    want = (bh, nbh * block_kv + halo2, nbw * block_kv + halo2)
    if tuple(k.shape[:3]) != want or tuple(v.shape[:3]) != want:
        raise ValueError(f"k/v grid {tuple(k.shape[:3])} / {tuple(v.shape[:3])} does not match {want}")
    if k.shape[-1] != q.shape[-1]:
        raise ValueError(f"q and k head dims differ: {q.shape[-1]} vs {k.shape[-1]}")
    rel = (bh, hq, wq, 2 * win - 1)
    if tuple(qrh.shape) != rel or tuple(qrw.shape) != rel:
        raise ValueError(
            f"relative logits must have shape {rel}, got {tuple(qrh.shape)} / {tuple(qrw.shape)}"
        )
    return nbh, nbw


def halo_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    qrh: torch.Tensor,
    qrw: torch.Tensor,
    block_q: int,
    block_kv: int,
    win: int,
    scale: float,
) -> torch.Tensor:
    """Plain-torch halo attention (the math the Triton kernel must reproduce)."""
    nbh, nbw = _check_shapes(q, k, v, qrh, qrw, block_q, block_kv, win)
    qb = _to_blocks(q, block_q)
    kw = _windows(k, win, block_kv)
    vw = _windows(v, win, block_kv)
    idx_h, idx_w = _relative_index(block_q, win, q.device)
    shape = (*qb.shape[:3], win * win)
    bias = torch.gather(_to_blocks(qrh, block_q), -1, idx_h.expand(shape))
    bias = bias + torch.gather(_to_blocks(qrw, block_q), -1, idx_w.expand(shape))
    attn = (qb @ kw.transpose(-1, -2)) * scale + bias
    out = attn.softmax(dim=-1) @ vw
    return _from_blocks(out, nbh, nbw, block_q)


def _supported(q: torch.Tensor, v: torch.Tensor, block_q: int, win: int) -> bool:
    return (
        q.dtype in (torch.float16, torch.bfloat16, torch.float32)
        and q.shape[-1] <= 128
        and v.shape[-1] <= 128
        and block_q * block_q <= 256
        and win * win <= 1024
    )


def halo_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    qrh: torch.Tensor,
    qrw: torch.Tensor,
    block_q: int,
    block_kv: int,
    win: int,
    scale: float,
) -> torch.Tensor:
    """Halo attention through the dispatch rule (Triton kernel or :func:`halo_attention_reference`)."""
    _check_shapes(q, k, v, qrh, qrw, block_q, block_kv, win)
    if use_triton(q, k, v, qrh, qrw, supported=_supported(q, v, block_q, win)):
        tensors = [t.contiguous() for t in (q, k, v, qrh, qrw)]
        out, _ = torch.ops.attnzoo.halo_attention(*tensors, block_q, block_kv, win, float(scale))
        return out
    return halo_attention_reference(q, k, v, qrh, qrw, block_q, block_kv, win, scale)


if triton_available():
    import triton
    import triton.language as tl
    from torch.library import triton_op, wrap_triton

    def _pow2(n: int, floor: int = 16) -> int:
        return max(floor, triton.next_power_of_2(n))

    @triton.jit
    def _tile_coords(
        pid_blk,
        NBW,
        BLOCK_Q: tl.constexpr,
        BLOCK_KV: tl.constexpr,
        WIN: tl.constexpr,
        BQ: tl.constexpr,
        BK: tl.constexpr,
    ):
        by = pid_blk // NBW
        bx = pid_blk % NBW
        qi = tl.arange(0, BQ)
        i = qi // BLOCK_Q
        j = qi % BLOCK_Q
        kj = tl.arange(0, BK)
        p = kj // WIN
        c = kj % WIN
        q_row = by * BLOCK_Q + i
        q_col = bx * BLOCK_Q + j
        k_row = by * BLOCK_KV + p
        k_col = bx * BLOCK_KV + c
        return i, j, p, c, q_row, q_col, k_row, k_col, qi < BLOCK_Q * BLOCK_Q, kj < WIN * WIN

    @triton.jit
    def _logits(
        Q,
        K,
        QRH,
        QRW,
        bh,
        scale,
        HQ,
        WQ,
        HK,
        WK,
        DQK,
        R,
        i,
        j,
        p,
        c,
        q_row,
        q_col,
        k_row,
        k_col,
        q_mask,
        k_mask,
        WIN: tl.constexpr,
        BD: tl.constexpr,
        PRECISION: tl.constexpr,
    ):
        d = tl.arange(0, BD)
        d_mask = d < DQK
        q_off = ((bh * HQ + q_row) * WQ + q_col) * DQK
        k_off = ((bh * HK + k_row) * WK + k_col) * DQK
        q = tl.load(Q + q_off[:, None] + d[None, :], mask=q_mask[:, None] & d_mask[None, :], other=0.0)
        k = tl.load(K + k_off[:, None] + d[None, :], mask=k_mask[:, None] & d_mask[None, :], other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
        both = q_mask[:, None] & k_mask[None, :]
        r_off = ((bh * HQ + q_row) * WQ + q_col) * R
        h_idx = p[None, :] - i[:, None] + WIN - 1
        w_idx = c[None, :] - j[:, None] + WIN - 1
        s += tl.load(QRH + r_off[:, None] + h_idx, mask=both, other=0.0).to(tl.float32)
        s += tl.load(QRW + r_off[:, None] + w_idx, mask=both, other=0.0).to(tl.float32)
        s = tl.where(k_mask[None, :], s, float("-inf"))
        return q, k, s

    @triton.jit
    def _halo_fwd_kernel(
        Q,
        K,
        V,
        QRH,
        QRW,
        O,
        LSE,
        scale,
        NBW,
        HQ,
        WQ,
        HK,
        WK,
        DQK,
        DV,
        R,
        BLOCK_Q: tl.constexpr,
        BLOCK_KV: tl.constexpr,
        WIN: tl.constexpr,
        BQ: tl.constexpr,
        BK: tl.constexpr,
        BD: tl.constexpr,
        BDV: tl.constexpr,
        PRECISION: tl.constexpr,
    ):
        pid_blk = tl.program_id(0)
        bh = tl.program_id(1)
        i, j, p, c, q_row, q_col, k_row, k_col, q_mask, k_mask = _tile_coords(
            pid_blk, NBW, BLOCK_Q, BLOCK_KV, WIN, BQ, BK
        )
        _, _, s = _logits(
            Q,
            K,
            QRH,
            QRW,
            bh,
            scale,
            HQ,
            WQ,
            HK,
            WK,
            DQK,
            R,
            i,
            j,
            p,
            c,
            q_row,
            q_col,
            k_row,
            k_col,
            q_mask,
            k_mask,
            WIN,
            BD,
            PRECISION,
        )
        m = tl.max(s, axis=1)
        e = tl.exp(s - m[:, None])
        denom = tl.sum(e, axis=1)
        dv = tl.arange(0, BDV)
        dv_mask = dv < DV
        v_off = ((bh * HK + k_row) * WK + k_col) * DV
        v = tl.load(V + v_off[:, None] + dv[None, :], mask=k_mask[:, None] & dv_mask[None, :], other=0.0)
        o = tl.dot(e.to(v.dtype), v, input_precision=PRECISION) / denom[:, None]
        o_off = ((bh * HQ + q_row) * WQ + q_col) * DV
        tl.store(
            O + o_off[:, None] + dv[None, :],
            o.to(O.dtype.element_ty),
            mask=q_mask[:, None] & dv_mask[None, :],
        )
        lse_off = (bh * HQ + q_row) * WQ + q_col
        tl.store(LSE + lse_off, m + tl.log(denom), mask=q_mask)

    @triton.jit
    def _halo_bwd_kernel(
        Q,
        K,
        V,
        QRH,
        QRW,
        O,
        LSE,
        DO,
        DQ,
        DK,
        DVV,
        DQRH,
        DQRW,
        scale,
        NBW,
        HQ,
        WQ,
        HK,
        WK,
        DQK,
        DV,
        R,
        BLOCK_Q: tl.constexpr,
        BLOCK_KV: tl.constexpr,
        WIN: tl.constexpr,
        BQ: tl.constexpr,
        BK: tl.constexpr,
        BD: tl.constexpr,
        BDV: tl.constexpr,
        BW: tl.constexpr,
        PRECISION: tl.constexpr,
    ):
        pid_blk = tl.program_id(0)
        bh = tl.program_id(1)
        i, j, p, c, q_row, q_col, k_row, k_col, q_mask, k_mask = _tile_coords(
            pid_blk, NBW, BLOCK_Q, BLOCK_KV, WIN, BQ, BK
        )
        q, k, s = _logits(
            Q,
            K,
            QRH,
            QRW,
            bh,
            scale,
            HQ,
            WQ,
            HK,
            WK,
            DQK,
            R,
            i,
            j,
            p,
            c,
            q_row,
            q_col,
            k_row,
            k_col,
            q_mask,
            k_mask,
            WIN,
            BD,
            PRECISION,
        )
        row_off = (bh * HQ + q_row) * WQ + q_col
        lse = tl.load(LSE + row_off, mask=q_mask, other=0.0)
        prob = tl.exp(s - lse[:, None])
        prob = tl.where(q_mask[:, None] & k_mask[None, :], prob, 0.0)

        dv = tl.arange(0, BDV)
        dv_mask = dv < DV
        qv_mask = q_mask[:, None] & dv_mask[None, :]
        kv_mask = k_mask[:, None] & dv_mask[None, :]
        do = tl.load(DO + row_off[:, None] * DV + dv[None, :], mask=qv_mask, other=0.0)
        o = tl.load(O + row_off[:, None] * DV + dv[None, :], mask=qv_mask, other=0.0)
        delta = tl.sum(do.to(tl.float32) * o.to(tl.float32), axis=1)
        k_rows = (bh * HK + k_row) * WK + k_col
        v = tl.load(V + k_rows[:, None] * DV + dv[None, :], mask=kv_mask, other=0.0)

        # dV: windows of neighbouring blocks overlap in the halo, so accumulate atomically (fp32).
        dv_blk = tl.dot(tl.trans(prob.to(do.dtype)), do, input_precision=PRECISION)
        tl.atomic_add(DVV + k_rows[:, None] * DV + dv[None, :], dv_blk, mask=kv_mask)

        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = prob * (dp - delta[:, None])

        d = tl.arange(0, BD)
        d_mask = d < DQK
        dq = tl.dot(ds.to(q.dtype), k, input_precision=PRECISION) * scale
        tl.store(
            DQ + row_off[:, None] * DQK + d[None, :],
            dq.to(DQ.dtype.element_ty),
            mask=q_mask[:, None] & d_mask[None, :],
        )
        dk_blk = tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PRECISION) * scale
        tl.atomic_add(DK + k_rows[:, None] * DQK + d[None, :], dk_blk, mask=k_mask[:, None] & d_mask[None, :])

        # Relative logits: sum ds over the keys of each window row (column), then scatter the
        # [query, row] sums to the table index row - i + WIN - 1, which is unique per query.
        w = tl.arange(0, BW)
        onehot_h = (p[:, None] == w[None, :]).to(tl.float32)
        onehot_w = (c[:, None] == w[None, :]).to(tl.float32)
        g_h = tl.dot(ds, onehot_h, input_precision="ieee")
        g_w = tl.dot(ds, onehot_w, input_precision="ieee")
        rw_mask = q_mask[:, None] & (w[None, :] < WIN)
        tl.store(
            DQRH + row_off[:, None] * R + w[None, :] - i[:, None] + WIN - 1,
            g_h.to(DQRH.dtype.element_ty),
            mask=rw_mask,
        )
        tl.store(
            DQRW + row_off[:, None] * R + w[None, :] - j[:, None] + WIN - 1,
            g_w.to(DQRW.dtype.element_ty),
            mask=rw_mask,
        )

    def _launch_meta(q: torch.Tensor, v: torch.Tensor, block_q: int, win: int) -> dict:
        return dict(
            BQ=_pow2(block_q * block_q),
            BK=_pow2(win * win),
            BD=_pow2(q.shape[-1]),
            BDV=_pow2(v.shape[-1]),
            PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
        )

    @triton_op("attnzoo::halo_attention", mutates_args={})
    def _halo_attention_op(
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        qrh: torch.Tensor,
        qrw: torch.Tensor,
        block_q: int,
        block_kv: int,
        win: int,
        scale: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        bh, hq, wq, dqk = q.shape
        _, hk, wk, dv = v.shape
        nbh, nbw = hq // block_q, wq // block_q
        out = torch.empty((bh, hq, wq, dv), device=q.device, dtype=q.dtype)
        lse = torch.empty((bh, hq, wq), device=q.device, dtype=torch.float32)
        wrap_triton(_halo_fwd_kernel)[(nbh * nbw, bh)](
            q,
            k,
            v,
            qrh,
            qrw,
            out,
            lse,
            scale,
            nbw,
            hq,
            wq,
            hk,
            wk,
            dqk,
            dv,
            2 * win - 1,
            BLOCK_Q=block_q,
            BLOCK_KV=block_kv,
            WIN=win,
            **_launch_meta(q, v, block_q, win),
        )
        return out, lse

    @triton_op("attnzoo::halo_attention_backward", mutates_args={})
    def _halo_attention_backward_op(
        grad_out: torch.Tensor,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        qrh: torch.Tensor,
        qrw: torch.Tensor,
        out: torch.Tensor,
        lse: torch.Tensor,
        block_q: int,
        block_kv: int,
        win: int,
        scale: float,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        bh, hq, wq, dqk = q.shape
        _, hk, wk, dv = v.shape
        nbw = wq // block_q
        dq = torch.empty_like(q)
        dk = torch.zeros(k.shape, device=k.device, dtype=torch.float32)
        dvv = torch.zeros(v.shape, device=v.device, dtype=torch.float32)
        dqrh = torch.zeros_like(qrh)
        dqrw = torch.zeros_like(qrw)
        wrap_triton(_halo_bwd_kernel)[((hq // block_q) * nbw, bh)](
            q,
            k,
            v,
            qrh,
            qrw,
            out,
            lse,
            grad_out.contiguous(),
            dq,
            dk,
            dvv,
            dqrh,
            dqrw,
            scale,
            nbw,
            hq,
            wq,
            hk,
            wk,
            dqk,
            dv,
            2 * win - 1,
            BLOCK_Q=block_q,
            BLOCK_KV=block_kv,
            WIN=win,
            BW=_pow2(win),
            **_launch_meta(q, v, block_q, win),
        )
        return dq, dk.to(k.dtype), dvv.to(v.dtype), dqrh, dqrw

    @_halo_attention_op.register_fake
    def _halo_attention_fake(q, k, v, qrh, qrw, block_q, block_kv, win, scale):
        out = q.new_empty((*q.shape[:3], v.shape[-1]))
        return out, q.new_empty(q.shape[:3], dtype=torch.float32)

    @_halo_attention_backward_op.register_fake
    def _halo_attention_backward_fake(grad_out, q, k, v, qrh, qrw, out, lse, block_q, block_kv, win, scale):
        return tuple(torch.empty_like(t) for t in (q, k, v, qrh, qrw))

    def _setup_context(ctx, inputs, output) -> None:
        q, k, v, qrh, qrw, block_q, block_kv, win, scale = inputs
        out, lse = output
        ctx.save_for_backward(q, k, v, qrh, qrw, out, lse)
        ctx.meta = (block_q, block_kv, win, scale)

    def _backward(ctx, grad_out: torch.Tensor, _grad_lse: torch.Tensor):
        q, k, v, qrh, qrw, out, lse = ctx.saved_tensors
        grads = torch.ops.attnzoo.halo_attention_backward(grad_out, q, k, v, qrh, qrw, out, lse, *ctx.meta)
        return (*grads, None, None, None, None)

    _halo_attention_op.register_autograd(_backward, setup_context=_setup_context)

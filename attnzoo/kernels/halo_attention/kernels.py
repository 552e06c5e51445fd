"""Halo attention's ``@triton.jit`` kernels: one program per (query block, slice); see the package."""

import triton
import triton.language as tl

from attnzoo.kernels.common.tiles import atomic_add_tile, load_tile, softmax_grad_tile, store_tile


@triton.jit
def _block_logits(
    Q, K, QRH, QRW, pid_blk, bh, scale, NBW, HQ, WQ, HK, WK, DQK, R,
    BLOCK_Q: tl.constexpr, BLOCK_KV: tl.constexpr, WIN: tl.constexpr, BQ: tl.constexpr, BK: tl.constexpr,
    BD: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """Query block ``pid_blk`` of slice ``bh`` against its window: positions ``(i, j)`` of the queries
    in the block and ``(p, c)`` of the keys in the window, the rows of both (in ``[BH * H * W, D]``)
    and their masks, the q / k tiles and the logits (relative terms added, padding slots -inf)."""
    by = pid_blk // NBW
    bx = pid_blk % NBW
    qi = tl.arange(0, BQ)
    i = qi // BLOCK_Q
    j = qi % BLOCK_Q
    kj = tl.arange(0, BK)
    p = kj // WIN
    c = kj % WIN
    q_mask = qi < BLOCK_Q * BLOCK_Q
    k_mask = kj < WIN * WIN
    q_rows = (bh * HQ + by * BLOCK_Q + i) * WQ + bx * BLOCK_Q + j
    k_rows = (bh * HK + by * BLOCK_KV + p) * WK + bx * BLOCK_KV + c
    q = load_tile(Q, q_rows, q_mask, DQK, BD)
    k = load_tile(K, k_rows, k_mask, DQK, BD)
    s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
    both = q_mask[:, None] & k_mask[None, :]
    h_idx = p[None, :] - i[:, None] + WIN - 1
    w_idx = c[None, :] - j[:, None] + WIN - 1
    s += tl.load(QRH + q_rows[:, None] * R + h_idx, mask=both, other=0.0).to(tl.float32)
    s += tl.load(QRW + q_rows[:, None] * R + w_idx, mask=both, other=0.0).to(tl.float32)
    s = tl.where(k_mask[None, :], s, float("-inf"))
    return i, j, p, c, q_rows, k_rows, q_mask, k_mask, q, k, s


@triton.jit
def halo_fwd_kernel(
    Q, K, V, QRH, QRW, O, LSE, scale, NBW, HQ, WQ, HK, WK, DQK, DV, R,
    BLOCK_Q: tl.constexpr, BLOCK_KV: tl.constexpr, WIN: tl.constexpr, BQ: tl.constexpr, BK: tl.constexpr,
    BD: tl.constexpr, BDV: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    bh = tl.program_id(1)
    _, _, _, _, q_rows, k_rows, q_mask, k_mask, _, _, s = _block_logits(
        Q, K, QRH, QRW, tl.program_id(0), bh, scale, NBW, HQ, WQ, HK, WK, DQK, R,
        BLOCK_Q, BLOCK_KV, WIN, BQ, BK, BD, PRECISION,
    )  # fmt: skip
    m = tl.max(s, axis=1)
    e = tl.exp(s - m[:, None])
    denom = tl.sum(e, axis=1)
    v = load_tile(V, k_rows, k_mask, DV, BDV)
    o = tl.dot(e.to(v.dtype), v, input_precision=PRECISION) / denom[:, None]
    store_tile(O, q_rows, q_mask, DV, BDV, o)
    tl.store(LSE + q_rows, m + tl.log(denom), mask=q_mask)


@triton.jit
def halo_bwd_kernel(
    Q, K, V, QRH, QRW, O, LSE, DO, DQ, DK, DVV, DQRH, DQRW, scale, NBW, HQ, WQ, HK, WK, DQK, DV, R,
    BLOCK_Q: tl.constexpr, BLOCK_KV: tl.constexpr, WIN: tl.constexpr, BQ: tl.constexpr, BK: tl.constexpr,
    BD: tl.constexpr, BDV: tl.constexpr, BW: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    bh = tl.program_id(1)
    i, j, p, c, q_rows, k_rows, q_mask, k_mask, q, k, s = _block_logits(
        Q, K, QRH, QRW, tl.program_id(0), bh, scale, NBW, HQ, WQ, HK, WK, DQK, R,
        BLOCK_Q, BLOCK_KV, WIN, BQ, BK, BD, PRECISION,
    )  # fmt: skip
    lse = tl.load(LSE + q_rows, mask=q_mask, other=0.0)
    do = load_tile(DO, q_rows, q_mask, DV, BDV)
    o = load_tile(O, q_rows, q_mask, DV, BDV)
    delta = tl.sum(do.to(tl.float32) * o.to(tl.float32), axis=1)
    v = load_tile(V, k_rows, k_mask, DV, BDV)
    prob, ds = softmax_grad_tile(s, lse, delta, do, v, q_mask[:, None] & k_mask[None, :], PRECISION)

    # dV: windows of neighbouring blocks overlap in the halo, so accumulate atomically (fp32).
    dv_blk = tl.dot(tl.trans(prob.to(do.dtype)), do, input_precision=PRECISION)
    atomic_add_tile(DVV, k_rows, k_mask, DV, BDV, dv_blk)
    dq = tl.dot(ds.to(q.dtype), k, input_precision=PRECISION) * scale
    store_tile(DQ, q_rows, q_mask, DQK, BD, dq)
    dk_blk = tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PRECISION) * scale
    atomic_add_tile(DK, k_rows, k_mask, DQK, BD, dk_blk)

    # Relative logits: sum ds over the keys of each window row (column), then scatter the
    # [query, row] sums to the table index row - i + WIN - 1, which is unique per query.
    w = tl.arange(0, BW)
    onehot_h = (p[:, None] == w[None, :]).to(tl.float32)
    onehot_w = (c[:, None] == w[None, :]).to(tl.float32)
    g_h = tl.dot(ds, onehot_h, input_precision="ieee")
    g_w = tl.dot(ds, onehot_w, input_precision="ieee")
    rw_mask = q_mask[:, None] & (w[None, :] < WIN)
    tl.store(
        DQRH + q_rows[:, None] * R + w[None, :] - i[:, None] + WIN - 1,
        g_h.to(DQRH.dtype.element_ty),
        mask=rw_mask,
    )
    tl.store(
        DQRW + q_rows[:, None] * R + w[None, :] - j[:, None] + WIN - 1,
        g_w.to(DQRW.dtype.element_ty),
        mask=rw_mask,
    )

"""Halo attention's ``@triton.jit`` kernels; see the package docstring for the layout.

- :func:`halo_fwd_kernel`, :func:`halo_bwd_dq_kernel`: one program per (query block, slice); the
  window's ``WIN * WIN`` keys are walked in chunks of ``CK`` (online softmax in the forward), so a
  window pads to a multiple of ``CK`` instead of the next power of two (144 -> 160, not 256).
- :func:`halo_bwd_dkv_kernel`: one program per (key tile, slice), a ``BLOCK_KV x BLOCK_KV`` tile of
  the padded key map; it loops over the query blocks whose windows cover the tile and writes dK, dV
  once (windows overlap in the halo: no atomics, deterministic).
"""

import triton
import triton.language as tl

from attnzoo.kernels.common.tiles import load_tile, softmax_grad_tile, store_tile
from attnzoo.kernels.common.tuning import autotune

# The shape arguments that change which (warps, stages) config is fastest: map size, head dims, geometry.
_KEY = ["HQ", "WQ", "DQK", "DV", "BLOCK_Q", "BLOCK_KV", "WIN"]


@triton.jit
def _query_block(
    Q, pid_blk, bh, NBW, HQ, WQ, DQK, BLOCK_Q: tl.constexpr, BQ: tl.constexpr, BD: tl.constexpr
):  # fmt: skip
    """Query block ``pid_blk`` of slice ``bh``: its block coordinates, the positions ``(i, j)`` of its
    queries inside the block, their rows (in ``[BH * HQ * WQ, D]``), mask and q tile. Padding slots
    repeat the block's first query, so every load stays in bounds and every logit row finite."""
    by = pid_blk // NBW
    bx = pid_blk % NBW
    qi = tl.arange(0, BQ)
    q_mask = qi < BLOCK_Q * BLOCK_Q
    qi = tl.where(q_mask, qi, 0)
    i = qi // BLOCK_Q
    j = qi % BLOCK_Q
    q_rows = (bh * HQ + by * BLOCK_Q + i) * WQ + bx * BLOCK_Q + j
    return by, bx, i, j, q_rows, q_mask, load_tile(Q, q_rows, q_mask, DQK, BD)


@triton.jit
def _logits(a, b, QRH, QRW, rel_rows, h_idx, w_idx, mask, scale, PRECISION: tl.constexpr):
    """``scale * a b^T`` (queries x keys, or keys x queries) plus the height / width relative terms at
    ``QRH / QRW + rel_rows + h_idx / w_idx`` (``rel_rows``: the query's table row offset, broadcast
    along the keys); -inf where ``mask`` (broadcast to the tile) is false."""
    s = tl.dot(a, tl.trans(b), input_precision=PRECISION) * scale
    s += tl.load(QRH + rel_rows + h_idx, mask=mask, other=0.0).to(tl.float32)
    s += tl.load(QRW + rel_rows + w_idx, mask=mask, other=0.0).to(tl.float32)
    return tl.where(mask, s, float("-inf"))


@triton.jit
def _window_chunk(
    K, V, QRH, QRW, q, i, j, q_rows, q_mask, by, bx, bh, start, scale, HK, WK, DQK, DV, R,
    BLOCK_KV: tl.constexpr, WIN: tl.constexpr, CK: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr,
    PRECISION: tl.constexpr,
):  # fmt: skip
    """Keys ``start .. start + CK`` of the window of block ``(by, bx)`` (row-major over the window):
    their window positions ``(p, c)``, mask, k / v tiles and the logits (-inf past the window)."""
    kj = start + tl.arange(0, CK)
    p = kj // WIN
    c = kj % WIN
    k_mask = kj < WIN * WIN
    k_rows = (bh * HK + by * BLOCK_KV + p) * WK + bx * BLOCK_KV + c
    k = load_tile(K, k_rows, k_mask, DQK, BD)
    v = load_tile(V, k_rows, k_mask, DV, BDV)
    h_idx = p[None, :] - i[:, None] + WIN - 1
    w_idx = c[None, :] - j[:, None] + WIN - 1
    s = _logits(q, k, QRH, QRW, q_rows[:, None] * R, h_idx, w_idx, k_mask[None, :], scale, PRECISION)
    return p, c, k_mask, k, v, s


@autotune(key=_KEY)
@triton.jit
def halo_fwd_kernel(
    Q, K, V, QRH, QRW, O, LSE, scale, NBW, HQ, WQ, HK, WK, DQK, DV, R,
    BLOCK_Q: tl.constexpr, BLOCK_KV: tl.constexpr, WIN: tl.constexpr, BQ: tl.constexpr, CK: tl.constexpr,
    BD: tl.constexpr, BDV: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    bh = tl.program_id(1)
    by, bx, i, j, q_rows, q_mask, q = _query_block(Q, tl.program_id(0), bh, NBW, HQ, WQ, DQK, BLOCK_Q, BQ, BD)
    m = tl.full((BQ,), float("-inf"), dtype=tl.float32)
    denom = tl.zeros((BQ,), dtype=tl.float32)
    acc = tl.zeros((BQ, BDV), dtype=tl.float32)
    for start in range(0, WIN * WIN, CK):
        _, _, _, _, v, s = _window_chunk(
            K, V, QRH, QRW, q, i, j, q_rows, q_mask, by, bx, bh, start, scale, HK, WK, DQK, DV, R,
            BLOCK_KV, WIN, CK, BD, BDV, PRECISION,
        )  # fmt: skip
        # Every row's first chunk holds key 0, so m is finite from then on.
        m_new = tl.maximum(m, tl.max(s, axis=1))
        alpha = tl.exp(m - m_new)
        e = tl.exp(s - m_new[:, None])
        denom = denom * alpha + tl.sum(e, axis=1)
        acc = acc * alpha[:, None] + tl.dot(e.to(v.dtype), v, input_precision=PRECISION)
        m = m_new
    store_tile(O, q_rows, q_mask, DV, BDV, acc / denom[:, None])
    tl.store(LSE + q_rows, m + tl.log(denom), mask=q_mask)


@triton.jit
def _store_rel_grad(DREL, q_rows, q_mask, pos, g, R, WIN: tl.constexpr, BW: tl.constexpr):
    """Store ``g`` ``[queries, window row (column) w]`` at table index ``w - pos + WIN - 1``, which is
    unique per query: the relative-logit gradient, written without atomics."""
    w = tl.arange(0, BW)
    mask = q_mask[:, None] & (w[None, :] < WIN)
    idx = w[None, :] - pos[:, None] + WIN - 1
    tl.store(DREL + q_rows[:, None] * R + idx, g.to(DREL.dtype.element_ty), mask=mask)


@autotune(key=_KEY)
@triton.jit
def halo_bwd_dq_kernel(
    Q, K, V, QRH, QRW, O, LSE, DO, DELTA, DQ, DQRH, DQRW, scale, NBW, HQ, WQ, HK, WK, DQK, DV, R,
    BLOCK_Q: tl.constexpr, BLOCK_KV: tl.constexpr, WIN: tl.constexpr, BQ: tl.constexpr, CK: tl.constexpr,
    BD: tl.constexpr, BDV: tl.constexpr, BW: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """dQ and the relative-logit gradients of one query block; also stores ``delta = rowsum(dO * O)``
    for :func:`halo_bwd_dkv_kernel`."""
    bh = tl.program_id(1)
    by, bx, i, j, q_rows, q_mask, q = _query_block(Q, tl.program_id(0), bh, NBW, HQ, WQ, DQK, BLOCK_Q, BQ, BD)
    lse = tl.load(LSE + q_rows, mask=q_mask, other=0.0)
    do = load_tile(DO, q_rows, q_mask, DV, BDV)
    delta = tl.sum(do.to(tl.float32) * load_tile(O, q_rows, q_mask, DV, BDV).to(tl.float32), axis=1)
    tl.store(DELTA + q_rows, delta, mask=q_mask)
    dq = tl.zeros((BQ, BD), dtype=tl.float32)
    g_h = tl.zeros((BQ, BW), dtype=tl.float32)
    g_w = tl.zeros((BQ, BW), dtype=tl.float32)
    w = tl.arange(0, BW)
    for start in range(0, WIN * WIN, CK):
        p, c, k_mask, k, v, s = _window_chunk(
            K, V, QRH, QRW, q, i, j, q_rows, q_mask, by, bx, bh, start, scale, HK, WK, DQK, DV, R,
            BLOCK_KV, WIN, CK, BD, BDV, PRECISION,
        )  # fmt: skip
        _, ds = softmax_grad_tile(s, lse, delta, do, v, q_mask[:, None] & k_mask[None, :], PRECISION)
        dq += tl.dot(ds.to(q.dtype), k, input_precision=PRECISION)
        # Relative logits: sum ds over the keys of each window row (column), via one-hot dots.
        g_h += tl.dot(ds, (p[:, None] == w[None, :]).to(tl.float32), input_precision="ieee")
        g_w += tl.dot(ds, (c[:, None] == w[None, :]).to(tl.float32), input_precision="ieee")
    store_tile(DQ, q_rows, q_mask, DQK, BD, dq * scale)
    _store_rel_grad(DQRH, q_rows, q_mask, i, g_h, R, WIN, BW)
    _store_rel_grad(DQRW, q_rows, q_mask, j, g_w, R, WIN, BW)


@autotune(key=_KEY)
@triton.jit
def halo_bwd_dkv_kernel(
    Q, K, V, QRH, QRW, LSE, DO, DELTA, DK, DVV, scale, NBH, NBW, NTW, HQ, WQ, HK, WK, DQK, DV, R,
    BLOCK_Q: tl.constexpr, BLOCK_KV: tl.constexpr, WIN: tl.constexpr, NB: tl.constexpr,
    QPB: tl.constexpr, KEY_ROWS: tl.constexpr, BQT: tl.constexpr, BKT: tl.constexpr, BD: tl.constexpr,
    BDV: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """dK, dV of ``KEY_ROWS`` rows of key tile ``(ty, tx)`` (a tile's rows are split over ``PARTS``
    programs): keys ``ty * BLOCK_KV + a``, ``tx * BLOCK_KV + b`` (``a, b < BLOCK_KV``, clipped to the
    map). Query block ``(by, bx)``'s window starts at ``by * BLOCK_KV`` and is ``WIN`` wide, so it
    covers the tile iff ``ty - NB < by <= ty`` (``NB = cdiv(WIN, BLOCK_KV)``), likewise for ``bx``: up
    to ``NB * NB`` blocks (fewer at the map's border, where the range is clipped to the block grid),
    ``QPB`` of them per step (their queries stacked in one ``BQT``-row tile). A (query, key) pair
    counts only where the key lies in the query's window."""
    PARTS: tl.constexpr = (BLOCK_KV + KEY_ROWS - 1) // KEY_ROWS
    bh = tl.program_id(1)
    key_tile = tl.program_id(0) // PARTS
    ty = key_tile // NTW
    tx = key_tile % NTW
    kk = tl.arange(0, BKT)
    a = (tl.program_id(0) % PARTS) * KEY_ROWS + kk // BLOCK_KV
    kr = ty * BLOCK_KV + a
    kc = tx * BLOCK_KV + kk % BLOCK_KV
    k_mask = (kk < KEY_ROWS * BLOCK_KV) & (a < BLOCK_KV) & (kr < HK) & (kc < WK)
    k_rows = (bh * HK + kr) * WK + kc
    k = load_tile(K, k_rows, k_mask, DQK, BD)
    v = load_tile(V, k_rows, k_mask, DV, BDV)
    dk = tl.zeros((BKT, BD), dtype=tl.float32)
    dv = tl.zeros((BKT, BDV), dtype=tl.float32)
    r = tl.arange(0, BQT)
    qi = r % (BLOCK_Q * BLOCK_Q)
    i = qi // BLOCK_Q
    j = qi % BLOCK_Q
    by0 = tl.maximum(ty - (NB - 1), 0)
    bx0 = tl.maximum(tx - (NB - 1), 0)
    nbx = tl.minimum(tx, NBW - 1) - bx0 + 1
    nblk = (tl.minimum(ty, NBH - 1) - by0 + 1) * nbx
    for first in range(0, nblk, QPB):
        n = first + r // (BLOCK_Q * BLOCK_Q)
        by = by0 + n // nbx
        bx = bx0 + n % nbx
        q_mask = (r < QPB * BLOCK_Q * BLOCK_Q) & (n < nblk)
        q_rows = tl.where(q_mask, (bh * HQ + by * BLOCK_Q + i) * WQ + bx * BLOCK_Q + j, 0)
        # Key-major tiles ([keys, queries]): dK, dV are then plain dots, no transposed results.
        p = kr[:, None] - by[None, :] * BLOCK_KV
        c = kc[:, None] - bx[None, :] * BLOCK_KV
        mask = k_mask[:, None] & q_mask[None, :] & (p >= 0) & (p < WIN) & (c >= 0) & (c < WIN)
        q = load_tile(Q, q_rows, q_mask, DQK, BD)
        h_idx = p - i[None, :] + WIN - 1
        w_idx = c - j[None, :] + WIN - 1
        s_t = _logits(k, q, QRH, QRW, q_rows[None, :] * R, h_idx, w_idx, mask, scale, PRECISION)
        lse = tl.load(LSE + q_rows, mask=q_mask, other=0.0)
        delta = tl.load(DELTA + q_rows, mask=q_mask, other=0.0)
        do = load_tile(DO, q_rows, q_mask, DV, BDV)
        p_t = tl.where(mask, tl.exp(s_t - lse[None, :]), 0.0)
        dp_t = tl.dot(v, tl.trans(do), input_precision=PRECISION)
        dv += tl.dot(p_t.to(do.dtype), do, input_precision=PRECISION)
        dk += tl.dot((p_t * (dp_t - delta[None, :])).to(q.dtype), q, input_precision=PRECISION)
    store_tile(DK, k_rows, k_mask, DQK, BD, dk * scale)
    store_tile(DVV, k_rows, k_mask, DV, BDV, dv)

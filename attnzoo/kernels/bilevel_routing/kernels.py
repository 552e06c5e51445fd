"""Bi-level routing attention's ``@triton.jit`` kernels (see the package docstring).

Tokens live in rows of the ``[B * heads * H * W, D]`` matrices; region ``r`` holds tokens ``0 .. T``
(row-major, ``RH x RW``), those past the map border masked. Every program owns one block of one
region and walks a list of regions: the routed ones (forward, dQ) or the routing ones (dK / dV).
"""

import triton
import triton.language as tl

from attnzoo.kernels.common.tiles import load_tile, softmax_grad_tile, store_tile


@triton.jit
def _token_rows(tok, region, valid, bh, H, W, NRW, RH, RW):
    """Rows of token ``tok`` of region ``region`` in slice ``bh``, and ``valid`` & inside the map."""
    y = (region // NRW) * RH + tok // RW
    x = (region % NRW) * RW + tok % RW
    return (bh * H + y) * W + x, valid & (y < H) & (x < W)


@triton.jit
def _own_block(pid, NB, bh, T, H, W, NRW, RH, RW, BLOCK: tl.constexpr):
    """The region ``pid // NB`` this program works on, and the rows / mask of its block ``pid % NB``."""
    r = pid // NB
    tok = (pid % NB) * BLOCK + tl.arange(0, BLOCK)
    rows, mask = _token_rows(tok, r, tok < T, bh, H, W, NRW, RH, RW)
    return r, rows, mask


@triton.jit
def _listed_block(TABLE, base, start, n, bh, T, H, W, NR, NRW, RH, RW, BLOCK: tl.constexpr):
    """Rows / mask of entries ``start .. start + BLOCK`` of a region list of ``n = len * T`` tokens:
    entry ``e`` is token ``e % T`` of region ``TABLE[base + e // T]``. A region outside ``[0, NR)``
    (an unchecked routing index, as in a compiled graph) is masked: never read, never attended."""
    e = start + tl.arange(0, BLOCK)
    in_range = e < n
    region = tl.load(TABLE + base + e // T, mask=in_range, other=0)
    valid = in_range & (region >= 0) & (region < NR)
    return _token_rows(e % T, tl.where(valid, region, 0), valid, bh, H, W, NRW, RH, RW)


@triton.jit
def _query_side(Q, DO, LSE, DELTA, rows, mask, DQK, DV, BD: tl.constexpr, BDV: tl.constexpr):
    """What the backward needs of a query block: ``q``, ``dO``, the log-sum-exp and ``delta``."""
    q = load_tile(Q, rows, mask, DQK, BD)
    do = load_tile(DO, rows, mask, DV, BDV)
    lse = tl.load(LSE + rows, mask=mask, other=0.0)
    delta = tl.load(DELTA + rows, mask=mask, other=0.0)
    return q, do, lse, delta


@triton.jit
def bra_fwd_kernel(
    Q, K, V, IDX, O, LSE, scale,
    H, W, NR, NRW, RH, RW, T, TOPK, HEADS, DQK, DV, NQB,
    BQ: tl.constexpr, BK: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    bh = tl.program_id(1)
    b = bh // HEADS
    r, q_rows, q_mask = _own_block(tl.program_id(0), NQB, bh, T, H, W, NRW, RH, RW, BQ)
    q = load_tile(Q, q_rows, q_mask, DQK, BD)
    m_i = tl.full([BQ], float("-inf"), tl.float32)
    l_i = tl.zeros([BQ], tl.float32)
    acc = tl.zeros([BQ, BDV], tl.float32)
    nk = TOPK * T
    idx_base = (b * NR + r) * TOPK
    for start in range(0, nk, BK):
        k_rows, k_mask = _listed_block(IDX, idx_base, start, nk, bh, T, H, W, NR, NRW, RH, RW, BK)
        k = load_tile(K, k_rows, k_mask, DQK, BD)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
        s = tl.where(k_mask[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp(m_i - m_safe)
        p = tl.exp(s - m_safe[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        v = load_tile(V, k_rows, k_mask, DV, BDV)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    l_safe = tl.where(l_i == 0.0, 1.0, l_i)
    store_tile(O, q_rows, q_mask, DV, BDV, acc / l_safe[:, None])
    tl.store(LSE + q_rows, m_i + tl.log(l_safe), mask=q_mask)


@triton.jit
def bra_bwd_dq_kernel(
    Q, K, V, IDX, DO, LSE, DELTA, DQ, scale,
    H, W, NR, NRW, RH, RW, T, TOPK, HEADS, DQK, DV, NQB,
    BQ: tl.constexpr, BK: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    bh = tl.program_id(1)
    b = bh // HEADS
    r, q_rows, q_mask = _own_block(tl.program_id(0), NQB, bh, T, H, W, NRW, RH, RW, BQ)
    q, do, lse, delta = _query_side(Q, DO, LSE, DELTA, q_rows, q_mask, DQK, DV, BD, BDV)
    dq = tl.zeros([BQ, BD], tl.float32)
    nk = TOPK * T
    idx_base = (b * NR + r) * TOPK
    for start in range(0, nk, BK):
        k_rows, k_mask = _listed_block(IDX, idx_base, start, nk, bh, T, H, W, NR, NRW, RH, RW, BK)
        k = load_tile(K, k_rows, k_mask, DQK, BD)
        v = load_tile(V, k_rows, k_mask, DV, BDV)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
        _, ds = softmax_grad_tile(s, lse, delta, do, v, q_mask[:, None] & k_mask[None, :], PRECISION)
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PRECISION)
    store_tile(DQ, q_rows, q_mask, DQK, BD, dq * scale)


@triton.jit
def bra_bwd_dkdv_kernel(
    Q, K, V, SRC, OFF, DO, LSE, DELTA, DK, DVV, scale,
    H, W, NR, NRW, RH, RW, T, TOPK, HEADS, DQK, DV, NKB,
    BQ: tl.constexpr, BK: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    bh = tl.program_id(1)
    b = bh // HEADS
    r, k_rows, k_mask = _own_block(tl.program_id(0), NKB, bh, T, H, W, NRW, RH, RW, BK)
    k = load_tile(K, k_rows, k_mask, DQK, BD)
    v = load_tile(V, k_rows, k_mask, DV, BDV)
    dk = tl.zeros([BK, BD], tl.float32)
    dvacc = tl.zeros([BK, BDV], tl.float32)
    first = tl.load(OFF + b * (NR + 1) + r)
    nq = (tl.load(OFF + b * (NR + 1) + r + 1) - first) * T
    src_base = b * NR * TOPK + first
    for start in range(0, nq, BQ):
        q_rows, q_mask = _listed_block(SRC, src_base, start, nq, bh, T, H, W, NR, NRW, RH, RW, BQ)
        q, do, lse, delta = _query_side(Q, DO, LSE, DELTA, q_rows, q_mask, DQK, DV, BD, BDV)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
        p, ds = softmax_grad_tile(s, lse, delta, do, v, q_mask[:, None] & k_mask[None, :], PRECISION)
        dvacc += tl.dot(tl.trans(p.to(do.dtype)), do, input_precision=PRECISION)
        dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PRECISION)
    store_tile(DK, k_rows, k_mask, DQK, BD, dk * scale)
    store_tile(DVV, k_rows, k_mask, DV, BDV, dvacc)

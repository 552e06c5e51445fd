"""Top-k attention's ``@triton.jit`` kernels (see the package docstring).

Queries, keys and values live in rows of the ``[B * H * M, D]`` / ``[B * H * N, D]`` matrices. The
forward and dQ programs own ``BM`` query rows of one ``(b, h)`` slice and walk their ``K`` selected
keys ``BK`` at a time, gathering the keys / values by pointer into ``[BM, BK, D]`` tiles (no ``tl.dot``:
every row has its own keys, so the products are row-wise and exact in fp32). The dK / dV program owns
one key and walks the query rows that selected it (an inverted index built on the host with one sort),
so the backward is deterministic and needs no atomics. Indices outside ``[0, N)`` are masked out (a
key that is not there), so no program ever reads outside ``k`` / ``v``.
"""

import triton
import triton.language as tl

from attnzoo.kernels.common.tiles import load_row, load_tile, store_row, store_tile
from attnzoo.kernels.common.tuning import GATHER_WARPS_STAGES, autotune


@triton.jit
def _row_block(pid, NMB, M, BM: tl.constexpr):
    """The slice ``bh`` (int64) of program ``pid``, its query rows (global) and their mask."""
    bh = (pid // NMB).to(tl.int64)
    local = (pid % NMB) * BM + tl.arange(0, BM)
    mask = local < M
    return bh, bh * M + local, mask


@triton.jit
def _selected(IDX, rows, row_mask, start, bh, TOPK, N, BK: tl.constexpr):
    """Global key rows ``[BM, BK]`` of entries ``start .. start + BK`` of the rows' index lists, and
    their mask (past ``TOPK``, masked rows and out-of-range indices are masked)."""
    j = start + tl.arange(0, BK)
    inside = row_mask[:, None] & (j < TOPK)[None, :]
    key = tl.load(IDX + rows[:, None] * TOPK + j[None, :], mask=inside, other=0)
    valid = inside & (key >= 0) & (key < N)
    return bh * N + key, valid


@triton.jit
def _gather(X, rows, valid, width, BW: tl.constexpr):
    """The ``[BM, BK, BW]`` fp32 tile of rows ``rows`` (``[BM, BK]``) of row-major ``X``, 0 where masked."""
    cols = tl.arange(0, BW)
    mask = valid[:, :, None] & (cols < width)[None, None, :]
    x = tl.load(X + rows[:, :, None] * width + cols[None, None, :], mask=mask, other=0.0)
    return x.to(tl.float32)


@autotune(key=["M", "N", "TOPK", "D", "DV"], warps_stages=GATHER_WARPS_STAGES)
@triton.jit
def topk_fwd_kernel(
    Q, K, V, IDX, O, LSE, scale, M, N, TOPK, D, DV, NMB,
    BM: tl.constexpr, BK: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr,
):  # fmt: skip
    bh, rows, row_mask = _row_block(tl.program_id(0), NMB, M, BM)
    q = load_tile(Q, rows, row_mask, D, BD).to(tl.float32)
    m_i = tl.full([BM], float("-inf"), tl.float32)
    l_i = tl.zeros([BM], tl.float32)
    acc = tl.zeros([BM, BDV], tl.float32)
    for start in range(0, TOPK, BK):
        keys, valid = _selected(IDX, rows, row_mask, start, bh, TOPK, N, BK)
        k = _gather(K, keys, valid, D, BD)
        s = tl.sum(q[:, None, :] * k, axis=2) * scale
        s = tl.where(valid, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp(m_i - m_safe)
        p = tl.exp(s - m_safe[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        v = _gather(V, keys, valid, DV, BDV)
        acc = acc * alpha[:, None] + tl.sum(p[:, :, None] * v, axis=1)
        m_i = m_new
    l_safe = tl.where(l_i == 0.0, 1.0, l_i)
    store_tile(O, rows, row_mask, DV, BDV, acc / l_safe[:, None])
    tl.store(LSE + rows, m_i + tl.log(l_safe), mask=row_mask)


@autotune(key=["M", "N", "TOPK", "D", "DV"], warps_stages=GATHER_WARPS_STAGES)
@triton.jit
def topk_bwd_dq_kernel(
    Q, K, V, IDX, DO, LSE, DELTA, DQ, scale, M, N, TOPK, D, DV, NMB,
    BM: tl.constexpr, BK: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr,
):  # fmt: skip
    bh, rows, row_mask = _row_block(tl.program_id(0), NMB, M, BM)
    q = load_tile(Q, rows, row_mask, D, BD).to(tl.float32)
    do = load_tile(DO, rows, row_mask, DV, BDV).to(tl.float32)
    lse = tl.load(LSE + rows, mask=row_mask, other=0.0)
    delta = tl.load(DELTA + rows, mask=row_mask, other=0.0)
    dq = tl.zeros([BM, BD], tl.float32)
    for start in range(0, TOPK, BK):
        keys, valid = _selected(IDX, rows, row_mask, start, bh, TOPK, N, BK)
        k = _gather(K, keys, valid, D, BD)
        v = _gather(V, keys, valid, DV, BDV)
        s = tl.sum(q[:, None, :] * k, axis=2) * scale
        p = tl.where(valid, tl.exp(s - lse[:, None]), 0.0)
        dp = tl.sum(do[:, None, :] * v, axis=2)
        ds = p * (dp - delta[:, None])
        dq += tl.sum(ds[:, :, None] * k, axis=1)
    store_tile(DQ, rows, row_mask, D, BD, dq * scale)


@autotune(key=["M", "N", "TOPK", "D", "DV"], warps_stages=GATHER_WARPS_STAGES)
@triton.jit
def topk_bwd_dkdv_kernel(
    Q, K, V, SRC, OFF, DO, LSE, DELTA, DK, DVV, scale, M, N, TOPK, D, DV,
    BE: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    bh = (pid // N).to(tl.int64)
    row = bh * N + pid % N
    k = load_row(K, row, D, BD).to(tl.float32)
    v = load_row(V, row, DV, BDV).to(tl.float32)
    dk = tl.zeros([BD], tl.float32)
    dv = tl.zeros([BDV], tl.float32)
    first = tl.load(OFF + row + bh)  # OFF is [B * H, N + 1]
    last = tl.load(OFF + row + bh + 1)
    for start in range(first, last, BE):
        e = start + tl.arange(0, BE)
        e_mask = e < last
        q_rows = bh * M + tl.load(SRC + bh * M * TOPK + e, mask=e_mask, other=0)
        q = load_tile(Q, q_rows, e_mask, D, BD).to(tl.float32)
        do = load_tile(DO, q_rows, e_mask, DV, BDV).to(tl.float32)
        lse = tl.load(LSE + q_rows, mask=e_mask, other=0.0)
        delta = tl.load(DELTA + q_rows, mask=e_mask, other=0.0)
        s = tl.sum(q * k[None, :], axis=1) * scale
        p = tl.where(e_mask, tl.exp(s - lse), 0.0)
        ds = p * (tl.sum(do * v[None, :], axis=1) - delta)
        dv += tl.sum(p[:, None] * do, axis=0)
        dk += tl.sum(ds[:, None] * q, axis=0)
    store_row(DK, row, D, BD, dk * scale)
    store_row(DVV, row, DV, BDV, dv)

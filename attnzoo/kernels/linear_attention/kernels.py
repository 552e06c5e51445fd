"""MALA / InLine linear attention's ``@triton.jit`` kernels (see the package docstring for the math).

Inputs are ``[S * N, width]`` row-major matrices: ``S`` slices (batch x heads x ...) of ``N`` tokens.
Per-slice statistics are packed fp32 rows of ``W = D * Dv + D + Dv`` numbers
(:func:`~attnzoo.kernels.common.linear_reduce.store_packed`): forward ``(KV, m, vbar)``, backward
``(dKV, dzk, dvbar / N)``. The chunk kernels (one program per (token chunk, slice)) write one partial
row per program, or the final row when a slice has one chunk (``FINAL``); :func:`finish_kernel` adds
the partial rows of each slice in chunk order and applies the ``1 / N`` (and ``scale``) factors. The
token kernels (one program per (token tile, slice)) then apply the statistics per token.

Forward: :func:`reduce_kernel` -> (:func:`finish_kernel`) -> :func:`output_kernel`.
Backward: :func:`query_grad_kernel` (dq, dzq; partial dKV, dm, dvbar) -> (:func:`finish_kernel`) ->
:func:`key_grad_kernel` (dk, dv, dzk).
"""

import triton
import triton.language as tl

from attnzoo.kernels.common.linear_reduce import (
    dot_f32,
    load_packed,
    outer_product_sum,
    store_packed,
    sum_chunks,
    weighted_row_sum,
)
from attnzoo.kernels.common.tiles import load_tile, store_tile, token_tiles
from attnzoo.kernels.common.tuning import FOUR_WARPS_AT_MOST, autotune


@triton.jit
def _coefficients(z, c_scale, eps, MALA: tl.constexpr):
    """Per-token multipliers ``(c, r)`` of ``q_i KV`` and of ``vbar``, with ``c_scale = scale / N``."""
    if MALA:
        return c_scale * (1.0 + 1.0 / (z + eps)), -z
    return c_scale + 0.0 * z, 1.0 - z


@autotune(key=["N", "D", "DV", "CHUNK"], warps_stages=FOUR_WARPS_AT_MOST)
@triton.jit
def reduce_kernel(
    K, V, ZK, P, N, D, DV, CHUNK, NCHUNK, f_a, f_b,
    BT: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr, FINAL: tl.constexpr,
    PRECISION: tl.constexpr,
):  # fmt: skip
    """Chunk ``program_id(0)`` of slice ``program_id(1)``: ``sum k_j v_j^T``, ``sum zk_j``, ``sum v_j``
    (times ``f_a`` / ``f_b`` = ``1 / N`` for the vectors when ``FINAL``)."""
    chunk = tl.program_id(0)
    s = tl.program_id(1).to(tl.int64)
    kv = tl.zeros((BD, BDV), dtype=tl.float32)
    k_sum = tl.zeros((BD,), dtype=tl.float32)
    v_sum = tl.zeros((BDV,), dtype=tl.float32)
    lo = chunk * CHUNK
    for start in range(lo, tl.minimum(lo + CHUNK, N), BT):
        k, v, rows, mask = token_tiles(K, V, s, start, N, D, DV, BT, BD, BDV)
        zk = load_tile(ZK, rows, mask, D, BD)
        kv += outer_product_sum(k, v, PRECISION)
        k_sum += tl.sum(zk.to(tl.float32), axis=0)
        v_sum += tl.sum(v.to(tl.float32), axis=0)
    if FINAL:
        k_sum *= f_a
        v_sum *= f_b
    store_packed(P, s * NCHUNK + chunk, D, DV, BD, BDV, kv, k_sum, v_sum)


@autotune(key=["NCHUNK", "D", "DV"], warps_stages=FOUR_WARPS_AT_MOST)
@triton.jit
def finish_kernel(P, OUT, NCHUNK, D, DV, f_a, f_b, BW: tl.constexpr):
    """Columns ``program_id(0) * BW ..`` of slice ``program_id(1)``'s packed row: the sum of its
    ``NCHUNK`` partial rows in chunk order, the two vectors times ``f_a`` and ``f_b``."""
    s = tl.program_id(1).to(tl.int64)
    W = D * DV + D + DV
    cols = tl.program_id(0) * BW + tl.arange(0, BW)
    mask = cols < W
    acc = sum_chunks(P, s, NCHUNK, W, cols, mask, BW)
    factor = tl.where(cols < D * DV, 1.0, tl.where(cols < D * DV + D, f_a, f_b))
    tl.store(OUT + s * W + cols, acc * factor, mask=mask)


@autotune(key=["N", "D", "DV"], warps_stages=FOUR_WARPS_AT_MOST)
@triton.jit
def output_kernel(
    Q, ZQ, STATS, O, N, D, DV, scale, c_scale, eps,
    BM: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr, MALA: tl.constexpr,
    PRECISION: tl.constexpr,
):  # fmt: skip
    """Token tile ``program_id(0)`` of slice ``program_id(1)``: ``out_i = c_i (q_i KV) + r_i vbar``."""
    s = tl.program_id(1).to(tl.int64)
    q, zq, rows, mask = token_tiles(Q, ZQ, s, tl.program_id(0) * BM, N, D, D, BM, BD, BD)
    kv, m, v_bar = load_packed(STATS, s, D, DV, BD, BDV)
    z = scale * tl.sum(zq.to(tl.float32) * m[None, :], axis=1)
    c, r = _coefficients(z, c_scale, eps, MALA)
    out = c[:, None] * dot_f32(q, kv, PRECISION) + r[:, None] * v_bar[None, :]
    store_tile(O, rows, mask, DV, BDV, out)


@autotune(key=["N", "D", "DV", "CHUNK"], warps_stages=FOUR_WARPS_AT_MOST)
@triton.jit
def query_grad_kernel(
    Q, ZQ, DO, STATS, DQ, DZQ, P, N, D, DV, CHUNK, NCHUNK, scale, c_scale, eps, f_a, f_b,
    BT: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr, MALA: tl.constexpr, FINAL: tl.constexpr,
    PRECISION: tl.constexpr,
):  # fmt: skip
    """Chunk ``program_id(0)`` of slice ``program_id(1)``: per token ``dq_i = c_i dO_i KV^T`` and
    ``dzq_i = scale dz_i m``; over the chunk ``sum c_i q_i^T dO_i``, ``sum dz_i zq_i`` and
    ``sum r_i dO_i`` (times ``f_a = scale / N`` / ``f_b = 1 / N`` when ``FINAL``)."""
    chunk = tl.program_id(0)
    s = tl.program_id(1).to(tl.int64)
    kv, m, v_bar = load_packed(STATS, s, D, DV, BD, BDV)
    dkv = tl.zeros((BD, BDV), dtype=tl.float32)
    dm = tl.zeros((BD,), dtype=tl.float32)
    dv_bar = tl.zeros((BDV,), dtype=tl.float32)
    lo = chunk * CHUNK
    for start in range(lo, tl.minimum(lo + CHUNK, N), BT):
        q, zq, rows, mask = token_tiles(Q, ZQ, s, start, N, D, D, BT, BD, BD)
        do = load_tile(DO, rows, mask, DV, BDV)
        zq = zq.to(tl.float32)
        do32 = do.to(tl.float32)
        z = scale * tl.sum(zq * m[None, :], axis=1)
        c, r = _coefficients(z, c_scale, eps, MALA)
        c = tl.where(mask, c, 0.0)  # padded rows: z = 0, so c = 1 / eps (inf for eps = 0)
        g = dot_f32(do, tl.trans(kv), PRECISION)  # dO KV^T, [BT, BD]
        dr = tl.sum(do32 * v_bar[None, :], axis=1)
        if MALA:
            dc = tl.sum(q.to(tl.float32) * g, axis=1)  # dO_i . (q_i KV)
            zc = z + eps
            dz = tl.where(mask, -dc * c_scale / (zc * zc) - dr, 0.0)
        else:
            dz = -dr
        store_tile(DQ, rows, mask, D, BD, c[:, None] * g)
        store_tile(DZQ, rows, mask, D, BD, (scale * dz)[:, None] * m[None, :])
        dkv += dot_f32(tl.trans(q), c[:, None] * do32, PRECISION)
        dm += weighted_row_sum(dz, zq)
        dv_bar += weighted_row_sum(r, do32)
    if FINAL:
        dm *= f_a
        dv_bar *= f_b
    store_packed(P, s * NCHUNK + chunk, D, DV, BD, BDV, dkv, dm, dv_bar)


@autotune(key=["N", "D", "DV"], warps_stages=FOUR_WARPS_AT_MOST)
@triton.jit
def key_grad_kernel(
    K, V, GSTATS, DK, DVV, DZK, N, D, DV,
    BM: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """Token tile ``program_id(0)`` of slice ``program_id(1)``: ``dk_j = dKV v_j``,
    ``dv_j = dKV^T k_j + dvbar / N`` and ``dzk_j = scale sum_i dz_i zq_i / N`` (the same for every j)."""
    s = tl.program_id(1).to(tl.int64)
    k, v, rows, mask = token_tiles(K, V, s, tl.program_id(0) * BM, N, D, DV, BM, BD, BDV)
    dkv, dzk, dv_mean = load_packed(GSTATS, s, D, DV, BD, BDV)
    store_tile(DK, rows, mask, D, BD, dot_f32(v, tl.trans(dkv), PRECISION))
    store_tile(DVV, rows, mask, DV, BDV, dot_f32(k, dkv, PRECISION) + dv_mean[None, :])
    store_tile(DZK, rows, mask, D, BD, tl.zeros((BM, BD), dtype=tl.float32) + dzk[None, :])

"""InfSA's ``@triton.jit`` kernels: pure (tiled over queries and keys) and linear (one program per
slice, two token passes); see the package docstring for the math."""

import triton
import triton.language as tl

from attnzoo.kernels.common.linear_reduce import token_tile_f32, weighted_row_sum
from attnzoo.kernels.common.tiles import load_row, store_row, store_tile, token_tile, token_tiles


@triton.jit
def _mm(a, b, LOWP: tl.constexpr, PRECISION: tl.constexpr):
    """``a @ b`` for an fp32 ``a`` built from the relu map (unbounded) and an input-dtype ``b``.

    bf16 inputs (LOWP): ``a`` rounds to bf16, whose range is fp32's, and the dot runs on bf16 tensor
    cores (as flash attention rounds P). fp16 cannot hold ``a`` (it can exceed 65504), so fp16 and
    fp32 inputs multiply on fp32 operands (tf32 for fp16, exact for fp32).
    """
    if LOWP:
        return tl.dot(a.to(b.dtype), b)
    return tl.dot(a, b.to(tl.float32), input_precision=PRECISION)


# ----------------------------------------------------------------------------- pure: forward
@triton.jit
def pure_fwd_kernel(
    Q, K, V, U, SS, N, DQK, DV, qk_scale,
    BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr,
    PRECISION: tl.constexpr, LOWP: tl.constexpr,
):  # fmt: skip
    bh = tl.program_id(1)
    q, rows, r_mask = token_tile(Q, bh, tl.program_id(0) * BM, N, DQK, BM, BD)
    acc = tl.zeros((BM, BDV), dtype=tl.float32)
    ss = tl.zeros((BM,), dtype=tl.float32)
    for start in range(0, N, BN):
        k, v, _, c_mask = token_tiles(K, V, bh, start, N, DQK, DV, BN, BD, BDV)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
        r = tl.where(c_mask[None, :] & (s > 0), s, 0.0)
        ss += tl.sum(r * r, axis=1)
        acc += _mm(r, v, LOWP, PRECISION)
    store_tile(U, rows, r_mask, DV, BDV, acc)
    tl.store(SS + rows, ss, mask=r_mask)


@triton.jit
def _pure_norm(SS, bh, N, BR: tl.constexpr):
    """||R||_F of slice ``bh`` from its per-row sums of squares (a fixed-order reduction)."""
    tot = tl.zeros((BR,), dtype=tl.float32)
    for start in range(0, N, BR):
        i = start + tl.arange(0, BR)
        tot += tl.load(SS + bh * N + i, mask=i < N, other=0.0)
    return tl.sqrt(tl.sum(tot, axis=0))


@triton.jit
def pure_finish_kernel(U, SS, O, NORM, N, DV, eps, BM: tl.constexpr, BDV: tl.constexpr, BR: tl.constexpr):
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    n = _pure_norm(SS, bh, N, BR)
    u, rows, mask = token_tile(U, bh, pid_m * BM, N, DV, BM, BDV)
    store_tile(O, rows, mask, DV, BDV, u / (n + eps))
    if pid_m == 0:
        tl.store(NORM + bh, n)


# ----------------------------------------------------------------------------- pure: backward
@triton.jit
def _pure_grad_tile(q, k, v, do, r_mask, c_mask, beta, qk_scale, PRECISION: tl.constexpr):
    """One (query, key) tile of the backward: the relu map ``r`` and ``dS = (dO V^T - beta R) [S > 0]``
    (both before the ``1 / c`` factor, applied once at the end)."""
    s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
    pos = r_mask[:, None] & c_mask[None, :] & (s > 0)
    r = tl.where(pos, s, 0.0)
    dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
    return r, tl.where(pos, dp - beta * r, 0.0)


@triton.jit
def pure_dkdv_kernel(
    Q, K, V, DO, BETA, NORM, DK, DVV, N, DQK, DV, qk_scale, eps,
    BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr,
    PRECISION: tl.constexpr, LOWP: tl.constexpr,
):  # fmt: skip
    bh = tl.program_id(1)
    k, v, cols, c_mask = token_tiles(K, V, bh, tl.program_id(0) * BN, N, DQK, DV, BN, BD, BDV)
    beta = tl.load(BETA + bh)
    inv_c = 1.0 / (tl.load(NORM + bh) + eps)
    dk = tl.zeros((BN, BD), dtype=tl.float32)
    dvv = tl.zeros((BN, BDV), dtype=tl.float32)
    for start in range(0, N, BM):
        q, do, _, r_mask = token_tiles(Q, DO, bh, start, N, DQK, DV, BM, BD, BDV)
        r, ds = _pure_grad_tile(q, k, v, do, r_mask, c_mask, beta, qk_scale, PRECISION)
        dvv += _mm(tl.trans(r), do, LOWP, PRECISION)
        dk += _mm(tl.trans(ds), q, LOWP, PRECISION)
    store_tile(DK, cols, c_mask, DQK, BD, dk * (inv_c * qk_scale))
    store_tile(DVV, cols, c_mask, DV, BDV, dvv * inv_c)


@triton.jit
def pure_dq_kernel(
    Q, K, V, DO, BETA, NORM, DQ, N, DQK, DV, qk_scale, eps,
    BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr,
    PRECISION: tl.constexpr, LOWP: tl.constexpr,
):  # fmt: skip
    bh = tl.program_id(1)
    q, do, rows, r_mask = token_tiles(Q, DO, bh, tl.program_id(0) * BM, N, DQK, DV, BM, BD, BDV)
    beta = tl.load(BETA + bh)
    inv_c = 1.0 / (tl.load(NORM + bh) + eps)
    dq = tl.zeros((BM, BD), dtype=tl.float32)
    for start in range(0, N, BN):
        k, v, _, c_mask = token_tiles(K, V, bh, start, N, DQK, DV, BN, BD, BDV)
        _, ds = _pure_grad_tile(q, k, v, do, r_mask, c_mask, beta, qk_scale, PRECISION)
        dq += _mm(ds, k, LOWP, PRECISION)
    store_tile(DQ, rows, r_mask, DQK, BD, dq * (inv_c * qk_scale))


# ----------------------------------------------------------------------------- linear
@triton.jit
def _scaled_queries(Q, bh, start, N, DQK, scale, BN: tl.constexpr, BD: tl.constexpr):
    """A tile of ``q s`` (fp32) with its rows, mask and energies ``||q_i s||``."""
    q, rows, mask = token_tile_f32(Q, bh, start, N, DQK, BN, BD)
    qs = q * scale
    return qs, tl.sqrt(tl.sum(qs * qs, axis=1)), rows, mask


@triton.jit
def linear_fwd_kernel(
    Q, K, V, P, P32, QBAR, STATS, N, DQK, DV, scale, eps,
    BN: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr,
):  # fmt: skip
    bh = tl.program_id(0)
    # pass 1: queries -> energy-weighted pooled query
    e_sum = tl.zeros((BN,), dtype=tl.float32)
    q_acc = tl.zeros((BD,), dtype=tl.float32)
    for start in range(0, N, BN):
        qs, e, _, _ = _scaled_queries(Q, bh, start, N, DQK, scale, BN, BD)
        e_sum += e
        q_acc += weighted_row_sum(e, qs)
    e_tot = tl.sum(e_sum, axis=0)
    q_bar = q_acc / (e_tot + eps)
    # pass 2: keys and values -> relu weights and the pooled value
    z_sum = tl.zeros((BN,), dtype=tl.float32)
    v_acc = tl.zeros((BDV,), dtype=tl.float32)
    for start in range(0, N, BN):
        k, _, _ = token_tile_f32(K, bh, start, N, DQK, BN, BD)
        v, _, _ = token_tile_f32(V, bh, start, N, DV, BN, BDV)
        r = tl.maximum(tl.sum((k * scale) * q_bar[None, :], axis=1), 0.0)
        z_sum += r
        v_acc += weighted_row_sum(r, v)
    z_tot = tl.sum(z_sum, axis=0)
    pooled = v_acc / (z_tot + eps)
    store_row(P, bh, DV, BDV, pooled)
    store_row(P32, bh, DV, BDV, pooled)
    store_row(QBAR, bh, DQK, BD, q_bar)
    tl.store(STATS + bh * 2, e_tot)
    tl.store(STATS + bh * 2 + 1, z_tot)


@triton.jit
def linear_bwd_kernel(
    Q, K, V, DP, P32, QBAR, STATS, DQ, DK, DVV, N, DQK, DV, scale, eps,
    BN: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr,
):  # fmt: skip
    bh = tl.program_id(0)
    dp = load_row(DP, bh, DV, BDV).to(tl.float32)
    pooled = load_row(P32, bh, DV, BDV)
    q_bar = load_row(QBAR, bh, DQK, BD)
    inv_e = 1.0 / (tl.load(STATS + bh * 2) + eps)
    inv_z = 1.0 / (tl.load(STATS + bh * 2 + 1) + eps)
    gamma = tl.sum(dp * pooled, axis=0)
    # pass A: keys and values -> dK, dV and the gradient of q_bar
    dqbar = tl.zeros((BD,), dtype=tl.float32)
    for start in range(0, N, BN):
        k, rows, r_mask = token_tile_f32(K, bh, start, N, DQK, BN, BD)
        ks = k * scale
        v, _, _ = token_tile_f32(V, bh, start, N, DV, BN, BDV)
        t = tl.sum(ks * q_bar[None, :], axis=1)
        a = tl.maximum(t, 0.0) * inv_z
        store_tile(DVV, rows, r_mask, DV, BDV, a[:, None] * dp[None, :])
        dt = tl.where(t > 0, (tl.sum(v * dp[None, :], axis=1) - gamma) * inv_z, 0.0)
        store_tile(DK, rows, r_mask, DQK, BD, dt[:, None] * q_bar[None, :] * scale)
        dqbar += weighted_row_sum(dt, ks)
    # pass B: queries (q_bar = sum_i e_i q_i s / (E + eps), e_i = ||q_i s||)
    qbar_dot = tl.sum(q_bar * dqbar, axis=0)
    for start in range(0, N, BN):
        qs, e, rows, r_mask = _scaled_queries(Q, bh, start, N, DQK, scale, BN, BD)
        de = (tl.sum(qs * dqbar[None, :], axis=1) - qbar_dot) * inv_e
        coef = tl.where(e > 0, de / tl.where(e > 0, e, 1.0), 0.0)
        dqs = (e * inv_e)[:, None] * dqbar[None, :] + coef[:, None] * qs
        store_tile(DQ, rows, r_mask, DQK, BD, dqs * scale)

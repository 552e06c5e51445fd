"""InfSA's ``@triton.jit`` kernels (see the package docstring for the math).

Pure: tiled over (query or key tile, slice); per-tile partial sums (``||R||^2``, ``<dO, O>``) are
written once per program and summed in tile order by their readers, so no launch needs atomics
(a short slice's ``<dO, O>``: summed by every gradient program itself, saving a launch). Forward:
:func:`pure_fwd_kernel` -> :func:`pure_finish_kernel`; backward: (:func:`pure_delta_kernel`) ->
:func:`pure_dkdv_kernel` -> :func:`pure_dq_kernel`.

Linear: token *chunks* of each slice, one program per (chunk, slice). Forward:
:func:`linear_query_kernel` (partial energy-weighted query sums) -> :func:`linear_value_kernel`
(every program adds the query partials in chunk order to ``q_bar``; partial relu-weighted value sums)
-> :func:`linear_finish_kernel`. Backward: :func:`linear_key_grad_kernel` (dk, dv, partial gradient
of ``q_bar``) -> :func:`linear_query_grad_kernel` (dq). A slice of one chunk (``ONE_CHUNK``) runs
both passes in the program of its first kernel: one launch.
"""

import triton
import triton.language as tl

from attnzoo.kernels.common.linear_reduce import sum_chunks, token_tile_f32, weighted_row_sum
from attnzoo.kernels.common.tiles import load_row, store_row, store_tile, token_tile, token_tiles
from attnzoo.kernels.common.tuning import autotune


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


@triton.jit
def _slice_sum(X, bh, count, BR: tl.constexpr):
    """``sum_t X[bh * count + t]`` over the ``count`` per-tile partials of slice ``bh``, in a fixed
    order (every reader of the slice gets the same bits)."""
    tot = tl.zeros((BR,), dtype=tl.float32)
    for start in range(0, count, BR):
        i = start + tl.arange(0, BR)
        tot += tl.load(X + bh * count + i, mask=i < count, other=0.0)
    return tl.sum(tot, axis=0)


# ----------------------------------------------------------------------------- pure: forward
@autotune(key=["N", "DQK", "DV"])
@triton.jit
def pure_fwd_kernel(
    Q, K, V, U, SS, N, DQK, DV, qk_scale,
    BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr,
    PRECISION: tl.constexpr, LOWP: tl.constexpr,
):  # fmt: skip
    """Query tile ``program_id(0)``: ``U = R V`` (fp32) and the tile's ``sum R**2`` at ``SS[bh, tile]``."""
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    q, rows, r_mask = token_tile(Q, bh, pid_m * BM, N, DQK, BM, BD)
    acc = tl.zeros((BM, BDV), dtype=tl.float32)
    ss = tl.zeros((BM,), dtype=tl.float32)
    for start in range(0, N, BN):
        k, v, _, c_mask = token_tiles(K, V, bh, start, N, DQK, DV, BN, BD, BDV)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
        r = tl.where(c_mask[None, :] & (s > 0), s, 0.0)
        ss += tl.sum(r * r, axis=1)
        acc += _mm(r, v, LOWP, PRECISION)
    store_tile(U, rows, r_mask, DV, BDV, acc)
    tl.store(SS + bh * tl.num_programs(0) + pid_m, tl.sum(ss, axis=0))


@autotune(key=["N", "DV"])
@triton.jit
def pure_finish_kernel(
    U, SS, O, NORM, N, NT, DV, eps, BM: tl.constexpr, BDV: tl.constexpr, BR: tl.constexpr
):  # fmt: skip
    """``O = U / (||R||_F + eps)`` on token tile ``program_id(0)``, the norm from the ``NT`` tile sums."""
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    n = tl.sqrt(_slice_sum(SS, bh, NT, BR))
    u, rows, mask = token_tile(U, bh, pid_m * BM, N, DV, BM, BDV)
    store_tile(O, rows, mask, DV, BDV, u / (n + eps))
    if pid_m == 0:
        tl.store(NORM + bh, n)


# ----------------------------------------------------------------------------- pure: backward
@triton.jit
def _delta_sum(DO, O, bh, lo, hi, N, DV, BT: tl.constexpr, BDV: tl.constexpr):
    """``sum dO * O`` over tokens ``lo .. hi`` of slice ``bh`` (fp32)."""
    acc = tl.zeros((BT, BDV), dtype=tl.float32)
    for start in range(lo, hi, BT):
        do, o, _, _ = token_tiles(DO, O, bh, start, N, DV, DV, BT, BDV, BDV)
        acc += do.to(tl.float32) * o.to(tl.float32)
    return tl.sum(tl.sum(acc, axis=1), axis=0)


@autotune(key=["N", "DV"])
@triton.jit
def pure_delta_kernel(DO, O, DELTA, N, DV, BM: tl.constexpr, BDV: tl.constexpr):
    """Token tile ``program_id(0)``'s share of ``<dO, O>`` at ``DELTA[bh, tile]``."""
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    delta = _delta_sum(DO, O, bh, pid_m * BM, pid_m * BM + BM, N, DV, BM, BDV)
    tl.store(DELTA + bh * tl.num_programs(0) + pid_m, delta)


@triton.jit
def _pure_scalars(
    DO, O, DELTA, NORM, bh, N, NT, DV, eps, BR: tl.constexpr, BDV: tl.constexpr, INLINE: tl.constexpr
):  # fmt: skip
    """``beta = <dO, O> / n`` (0 for an all-zero map) and ``1 / c = 1 / (n + eps)`` of slice ``bh``:
    ``<dO, O>`` from the ``NT`` tile shares, ``BR`` a step, or (``INLINE``, short slices: no launch
    for the shares) from ``dO`` and ``O``, ``BR`` tokens a step."""
    n = tl.load(NORM + bh)
    if INLINE:
        delta = _delta_sum(DO, O, bh, 0, N, N, DV, BR, BDV)
    else:
        delta = _slice_sum(DELTA, bh, NT, BR)
    return tl.where(n > 0, delta / tl.where(n > 0, n, 1.0), 0.0), 1.0 / (n + eps)


@triton.jit
def _pure_grad_tile(q, k, v, do, r_mask, c_mask, beta, qk_scale, PRECISION: tl.constexpr):
    """One (query, key) tile of the backward: the relu map ``r`` and ``dS = (dO V^T - beta R) [S > 0]``
    (both before the ``1 / c`` factor, applied once at the end)."""
    s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
    pos = r_mask[:, None] & c_mask[None, :] & (s > 0)
    r = tl.where(pos, s, 0.0)
    dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
    return r, tl.where(pos, dp - beta * r, 0.0)


@autotune(key=["N", "DQK", "DV"])
@triton.jit
def pure_dkdv_kernel(
    Q, K, V, DO, O, DELTA, NORM, DK, DVV, N, NT, DQK, DV, qk_scale, eps,
    BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr, BR: tl.constexpr,
    INLINE: tl.constexpr, PRECISION: tl.constexpr, LOWP: tl.constexpr,
):  # fmt: skip
    """dK, dV of key tile ``program_id(0)`` (``BN`` keys), walking all query tiles."""
    bh = tl.program_id(1)
    k, v, cols, c_mask = token_tiles(K, V, bh, tl.program_id(0) * BN, N, DQK, DV, BN, BD, BDV)
    beta, inv_c = _pure_scalars(DO, O, DELTA, NORM, bh, N, NT, DV, eps, BR, BDV, INLINE)
    dk = tl.zeros((BN, BD), dtype=tl.float32)
    dvv = tl.zeros((BN, BDV), dtype=tl.float32)
    for start in range(0, N, BM):
        q, do, _, r_mask = token_tiles(Q, DO, bh, start, N, DQK, DV, BM, BD, BDV)
        r, ds = _pure_grad_tile(q, k, v, do, r_mask, c_mask, beta, qk_scale, PRECISION)
        dvv += _mm(tl.trans(r), do, LOWP, PRECISION)
        dk += _mm(tl.trans(ds), q, LOWP, PRECISION)
    store_tile(DK, cols, c_mask, DQK, BD, dk * (inv_c * qk_scale))
    store_tile(DVV, cols, c_mask, DV, BDV, dvv * inv_c)


@autotune(key=["N", "DQK", "DV"])
@triton.jit
def pure_dq_kernel(
    Q, K, V, DO, O, DELTA, NORM, DQ, N, NT, DQK, DV, qk_scale, eps,
    BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr, BR: tl.constexpr,
    INLINE: tl.constexpr, PRECISION: tl.constexpr, LOWP: tl.constexpr,
):  # fmt: skip
    """dQ of query tile ``program_id(0)`` (``BM`` queries), walking all key tiles."""
    bh = tl.program_id(1)
    q, do, rows, r_mask = token_tiles(Q, DO, bh, tl.program_id(0) * BM, N, DQK, DV, BM, BD, BDV)
    beta, inv_c = _pure_scalars(DO, O, DELTA, NORM, bh, N, NT, DV, eps, BR, BDV, INLINE)
    dq = tl.zeros((BM, BD), dtype=tl.float32)
    for start in range(0, N, BN):
        k, v, _, c_mask = token_tiles(K, V, bh, start, N, DQK, DV, BN, BD, BDV)
        _, ds = _pure_grad_tile(q, k, v, do, r_mask, c_mask, beta, qk_scale, PRECISION)
        dq += _mm(ds, k, LOWP, PRECISION)
    store_tile(DQ, rows, r_mask, DQK, BD, dq * (inv_c * qk_scale))


# ----------------------------------------------------------------------------- linear: pieces
@triton.jit
def _scaled_queries(Q, bh, start, N, DQK, scale, BN: tl.constexpr, BD: tl.constexpr):
    """A tile of ``q s`` (fp32) with its rows, mask and energies ``||q_i s||``."""
    q, rows, mask = token_tile_f32(Q, bh, start, N, DQK, BN, BD)
    qs = q * scale
    return qs, tl.sqrt(tl.sum(qs * qs, axis=1)), rows, mask


@triton.jit
def _query_sums(Q, s, lo, hi, N, DQK, scale, BN: tl.constexpr, BD: tl.constexpr):
    """``(sum_i e_i q_i s, sum_i e_i)`` over tokens ``lo .. hi`` of slice ``s``, ``e_i = ||q_i s||``."""
    e_sum = tl.zeros((BN,), dtype=tl.float32)
    q_acc = tl.zeros((BD,), dtype=tl.float32)
    for start in range(lo, hi, BN):
        qs, e, _, _ = _scaled_queries(Q, s, start, N, DQK, scale, BN, BD)
        e_sum += e
        q_acc += weighted_row_sum(e, qs)
    return q_acc, tl.sum(e_sum, axis=0)


@triton.jit
def _value_sums(
    K, V, q_bar, s, lo, hi, N, DQK, DV, scale, BN: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr
):  # fmt: skip
    """``(sum_j r_j v_j, sum_j r_j)`` over tokens ``lo .. hi``, ``r_j = relu(q_bar . k_j s)``."""
    z_sum = tl.zeros((BN,), dtype=tl.float32)
    v_acc = tl.zeros((BDV,), dtype=tl.float32)
    for start in range(lo, hi, BN):
        k, _, _ = token_tile_f32(K, s, start, N, DQK, BN, BD)
        v, _, _ = token_tile_f32(V, s, start, N, DV, BN, BDV)
        r = tl.maximum(tl.sum((k * scale) * q_bar[None, :], axis=1), 0.0)
        z_sum += r
        v_acc += weighted_row_sum(r, v)
    return v_acc, tl.sum(z_sum, axis=0)


@triton.jit
def _store_part(WS, row, W, off, width, BW: tl.constexpr, vec, total):
    """``vec`` (``width`` numbers), then ``total``, at column ``off`` of fp32 row ``row`` of ``WS``."""
    cols = tl.arange(0, BW)
    base = WS + row * W + off
    tl.store(base + cols, vec, mask=cols < width)
    tl.store(base + width, total)


@triton.jit
def _sum_parts(WS, s, NCHUNK, W, off, width, BW: tl.constexpr):
    """The :func:`_store_part` pair at column ``off`` summed over slice ``s``'s chunk rows, in order."""
    cols = tl.arange(0, BW)
    vec = sum_chunks(WS + off, s, NCHUNK, W, cols, cols < width, BW)
    total = tl.sum(sum_chunks(WS + off + width, s, NCHUNK, W, cols, cols < 1, BW), axis=0)
    return vec, total


@triton.jit
def _state(STATE, s, DQK, DV):
    """Slice ``s``'s fp32 state row ``[pooled (DV), q_bar (DQK), E, Z]``: its start."""
    return STATE + s * (DV + DQK + 2)


@triton.jit
def _store_result(
    P, STATE, s, DQK, DV, eps, q_bar, e_tot, v_acc, z_tot, BD: tl.constexpr, BDV: tl.constexpr
):  # fmt: skip
    """The pooled vector (input dtype) and the state row the backward reads."""
    pooled = v_acc / (z_tot + eps)
    store_row(P, s, DV, BDV, pooled)
    base = _state(STATE, s, DQK, DV)
    store_row(base, 0, DV, BDV, pooled)
    store_row(base + DV, 0, DQK, BD, q_bar)
    tl.store(base + DV + DQK, e_tot)
    tl.store(base + DV + DQK + 1, z_tot)


# ----------------------------------------------------------------------------- linear: forward
@autotune(key=["N", "DQK", "CHUNK"])
@triton.jit
def linear_query_kernel(Q, WS, N, DQK, W, CHUNK, NCHUNK, scale, BN: tl.constexpr, BD: tl.constexpr):
    """Chunk ``program_id(0)`` of slice ``program_id(1)``: its ``sum e_i q_i s`` and ``sum e_i``."""
    chunk = tl.program_id(0)
    s = tl.program_id(1).to(tl.int64)
    lo = chunk * CHUNK
    q_acc, e = _query_sums(Q, s, lo, tl.minimum(lo + CHUNK, N), N, DQK, scale, BN, BD)
    _store_part(WS, s * NCHUNK + chunk, W, 0, DQK, BD, q_acc, e)


@autotune(key=["N", "DQK", "DV", "CHUNK"])
@triton.jit
def linear_value_kernel(
    Q, K, V, WS, P, STATE, N, DQK, DV, W, CHUNK, NCHUNK, scale, eps,
    BN: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr, ONE_CHUNK: tl.constexpr,
):  # fmt: skip
    """Chunk ``program_id(0)`` of slice ``program_id(1)``: ``q_bar`` from the query partials (or, for
    ``ONE_CHUNK``, from the queries), then the chunk's ``sum r_j v_j`` and ``sum r_j`` (``ONE_CHUNK``:
    the results)."""
    chunk = tl.program_id(0)
    s = tl.program_id(1).to(tl.int64)
    if ONE_CHUNK:
        q_acc, e_tot = _query_sums(Q, s, 0, N, N, DQK, scale, BN, BD)
    else:
        q_acc, e_tot = _sum_parts(WS, s, NCHUNK, W, 0, DQK, BD)
    q_bar = q_acc / (e_tot + eps)
    lo = chunk * CHUNK
    v_acc, z = _value_sums(K, V, q_bar, s, lo, tl.minimum(lo + CHUNK, N), N, DQK, DV, scale, BN, BD, BDV)
    if ONE_CHUNK:
        _store_result(P, STATE, s, DQK, DV, eps, q_bar, e_tot, v_acc, z, BD, BDV)
    else:
        _store_part(WS, s * NCHUNK + chunk, W, DQK + 1, DV, BDV, v_acc, z)


@autotune(key=["DQK", "DV", "NCHUNK"])
@triton.jit
def linear_finish_kernel(
    WS, P, STATE, DQK, DV, W, NCHUNK, eps, BD: tl.constexpr, BDV: tl.constexpr
):  # fmt: skip
    """Slice ``program_id(0)``: both partial pairs summed in chunk order, then the results."""
    s = tl.program_id(0).to(tl.int64)
    q_acc, e_tot = _sum_parts(WS, s, NCHUNK, W, 0, DQK, BD)
    v_acc, z_tot = _sum_parts(WS, s, NCHUNK, W, DQK + 1, DV, BDV)
    _store_result(P, STATE, s, DQK, DV, eps, q_acc / (e_tot + eps), e_tot, v_acc, z_tot, BD, BDV)


# ----------------------------------------------------------------------------- linear: backward
@triton.jit
def _key_grads(
    K, V, DK, DVV, s, lo, hi, N, DQK, DV, q_bar, dp, gamma, inv_z, scale,
    BN: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr,
):  # fmt: skip
    """Store dK, dV of tokens ``lo .. hi``; return their share of the gradient of ``q_bar``."""
    dqbar = tl.zeros((BD,), dtype=tl.float32)
    for start in range(lo, hi, BN):
        k, rows, r_mask = token_tile_f32(K, s, start, N, DQK, BN, BD)
        ks = k * scale
        v, _, _ = token_tile_f32(V, s, start, N, DV, BN, BDV)
        t = tl.sum(ks * q_bar[None, :], axis=1)
        a = tl.maximum(t, 0.0) * inv_z
        store_tile(DVV, rows, r_mask, DV, BDV, a[:, None] * dp[None, :])
        dt = tl.where(t > 0, (tl.sum(v * dp[None, :], axis=1) - gamma) * inv_z, 0.0)
        store_tile(DK, rows, r_mask, DQK, BD, dt[:, None] * q_bar[None, :] * scale)
        dqbar += weighted_row_sum(dt, ks)
    return dqbar


@triton.jit
def _query_grads(Q, DQ, s, lo, hi, N, DQK, q_bar, dqbar, inv_e, scale, BN: tl.constexpr, BD: tl.constexpr):
    """Store dQ of tokens ``lo .. hi`` (``q_bar = sum_i e_i q_i s / (E + eps)``, ``e_i = ||q_i s||``)."""
    qbar_dot = tl.sum(q_bar * dqbar, axis=0)
    for start in range(lo, hi, BN):
        qs, e, rows, r_mask = _scaled_queries(Q, s, start, N, DQK, scale, BN, BD)
        de = (tl.sum(qs * dqbar[None, :], axis=1) - qbar_dot) * inv_e
        coef = tl.where(e > 0, de / tl.where(e > 0, e, 1.0), 0.0)
        dqs = (e * inv_e)[:, None] * dqbar[None, :] + coef[:, None] * qs
        store_tile(DQ, rows, r_mask, DQK, BD, dqs * scale)


@autotune(key=["N", "DQK", "DV", "CHUNK"])
@triton.jit
def linear_key_grad_kernel(
    Q, K, V, DP, STATE, DQ, DK, DVV, WS, N, DQK, DV, CHUNK, NCHUNK, scale, eps,
    BN: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr, ONE_CHUNK: tl.constexpr,
):  # fmt: skip
    """Chunk ``program_id(0)`` of slice ``program_id(1)``: dK, dV and the chunk's gradient of ``q_bar``
    (a partial row; ``ONE_CHUNK``: used at once for dQ of the whole slice)."""
    chunk = tl.program_id(0)
    s = tl.program_id(1).to(tl.int64)
    base = _state(STATE, s, DQK, DV)
    dp = load_row(DP, s, DV, BDV).to(tl.float32)
    gamma = tl.sum(dp * load_row(base, 0, DV, BDV), axis=0)
    q_bar = load_row(base + DV, 0, DQK, BD)
    inv_z = 1.0 / (tl.load(base + DV + DQK + 1) + eps)
    lo = chunk * CHUNK
    hi = tl.minimum(lo + CHUNK, N)
    dqbar = _key_grads(K, V, DK, DVV, s, lo, hi, N, DQK, DV, q_bar, dp, gamma, inv_z, scale, BN, BD, BDV)
    if ONE_CHUNK:
        inv_e = 1.0 / (tl.load(base + DV + DQK) + eps)
        _query_grads(Q, DQ, s, 0, N, N, DQK, q_bar, dqbar, inv_e, scale, BN, BD)
    else:
        store_row(WS, s * NCHUNK + chunk, DQK, BD, dqbar)


@autotune(key=["N", "DQK", "CHUNK"])
@triton.jit
def linear_query_grad_kernel(
    Q, STATE, WS, DQ, N, DQK, DV, CHUNK, NCHUNK, scale, eps, BN: tl.constexpr, BD: tl.constexpr
):  # fmt: skip
    """Chunk ``program_id(0)`` of slice ``program_id(1)``: dQ, the gradient of ``q_bar`` summed from
    the key chunks' partial rows in chunk order."""
    chunk = tl.program_id(0)
    s = tl.program_id(1).to(tl.int64)
    base = _state(STATE, s, DQK, DV)
    q_bar = load_row(base + DV, 0, DQK, BD)
    inv_e = 1.0 / (tl.load(base + DV + DQK) + eps)
    cols = tl.arange(0, BD)
    dqbar = sum_chunks(WS, s, NCHUNK, DQK, cols, cols < DQK, BD)
    lo = chunk * CHUNK
    _query_grads(Q, DQ, s, lo, tl.minimum(lo + CHUNK, N), N, DQK, q_bar, dqbar, inv_e, scale, BN, BD)

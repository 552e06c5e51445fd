"""Fourier-KArAt's ``@triton.jit`` kernels: forward (query tiles streaming key tiles) and backward (dq;
dk with the coefficient gradients); see the package docstring for the math.

Scores and harmonics are fp32 whatever the input dtype; the coefficient tiles are loaded per key tile
and basis function (``[BN, BR]``, cached) from the head's ``[2G + 1, N, R]`` block. The harmonics are a
runtime loop, not unrolled over ``G``: unrolled, Triton 3.6's compile of the three kernels grew from
32 s at G = 3 to 296 s at G = 11 (fp32, 64-token tiles, sm_90, one CPU core).
"""

import triton
import triton.language as tl

from attnzoo.kernels.common.tiles import atomic_add_tile, load_tile, store_tile, token_tile, token_tiles
from attnzoo.kernels.common.tuning import ONE_STAGE, autotune


@triton.jit
def _coef_tile(C, h, j, tok, mask, N, R, J: tl.constexpr, BR: tl.constexpr):
    """Rows ``tok`` of basis function ``j``'s ``[N, R]`` matrix of head ``h`` (fp32, 0 where masked)."""
    return load_tile(C, (h * J + j) * N + tok, mask, R, BR).to(tl.float32)


@triton.jit
def _dot(a, b, PRECISION: tl.constexpr):
    return tl.dot(a, b, input_precision=PRECISION)


@triton.jit
def _next_harmonic(cm, sm, c1, s1):
    """``(cos((m+1)x), sin((m+1)x))`` from ``(cos(mx), sin(mx))`` and ``(cos x, sin x)``."""
    return cm * c1 - sm * s1, sm * c1 + cm * s1


@triton.jit
def _silu_and_grad(s):
    sig = tl.sigmoid(s)
    return s * sig, sig * (1.0 + s * (1.0 - sig))


@autotune(key=["N", "D", "R", "H"], warps_stages=ONE_STAGE)
@triton.jit
def fwd_kernel(
    Q, K, C, P, N, D, R, H, qk_scale,
    G: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr, BR: tl.constexpr,
    PRECISION: tl.constexpr,
):  # fmt: skip
    J: tl.constexpr = 2 * G + 1
    bh = tl.program_id(1)
    h = bh % H
    q, rows, r_mask = token_tile(Q, bh, tl.program_id(0) * BM, N, D, BM, BD)
    acc = tl.zeros((BM, BR), dtype=tl.float32)
    for start in range(0, N, BN):
        k, _, c_mask = token_tile(K, bh, start, N, D, BN, BD)
        tok = start + tl.arange(0, BN)
        # Keys past N: their coefficient rows load as 0, so they add nothing.
        s = _dot(q, tl.trans(k), PRECISION) * qk_scale
        silu, _ = _silu_and_grad(s)
        acc += _dot(silu, _coef_tile(C, h, 0, tok, c_mask, N, R, J, BR), PRECISION)
        c1 = tl.cos(s)
        s1 = tl.sin(s)
        cm = c1
        sm = s1
        for m in range(1, G + 1):
            acc += _dot(cm, _coef_tile(C, h, 2 * m - 1, tok, c_mask, N, R, J, BR), PRECISION)
            acc += _dot(sm, _coef_tile(C, h, 2 * m, tok, c_mask, N, R, J, BR), PRECISION)
            if m < G:
                cm, sm = _next_harmonic(cm, sm, c1, s1)
    store_tile(P, rows, r_mask, R, BR, acc)


@triton.jit
def _score_grad(s, dp, C, h, tok, c_mask, N, R, J: tl.constexpr, G: tl.constexpr, BR: tl.constexpr,
                PRECISION: tl.constexpr):  # fmt: skip
    """``dS = sum_j f_j'(S) * (dP C_j^T)`` on one (query, key) tile."""
    _, dsilu = _silu_and_grad(s)
    ds = dsilu * _dot(dp, tl.trans(_coef_tile(C, h, 0, tok, c_mask, N, R, J, BR)), PRECISION)
    c1 = tl.cos(s)
    s1 = tl.sin(s)
    cm = c1
    sm = s1
    for m in range(1, G + 1):
        g_cos = _dot(dp, tl.trans(_coef_tile(C, h, 2 * m - 1, tok, c_mask, N, R, J, BR)), PRECISION)
        g_sin = _dot(dp, tl.trans(_coef_tile(C, h, 2 * m, tok, c_mask, N, R, J, BR)), PRECISION)
        ds += m * (cm * g_sin - sm * g_cos)
        if m < G:
            cm, sm = _next_harmonic(cm, sm, c1, s1)
    return ds


@autotune(key=["N", "D", "R", "H"], warps_stages=ONE_STAGE)
@triton.jit
def dq_kernel(
    Q, K, C, DP, DQ, N, D, R, H, qk_scale,
    G: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr, BR: tl.constexpr,
    PRECISION: tl.constexpr,
):  # fmt: skip
    J: tl.constexpr = 2 * G + 1
    bh = tl.program_id(1)
    h = bh % H
    q, dp, rows, r_mask = token_tiles(Q, DP, bh, tl.program_id(0) * BM, N, D, R, BM, BD, BR)
    dp = dp.to(tl.float32)
    dq = tl.zeros((BM, BD), dtype=tl.float32)
    for start in range(0, N, BN):
        k, _, c_mask = token_tile(K, bh, start, N, D, BN, BD)
        tok = start + tl.arange(0, BN)
        s = _dot(q, tl.trans(k), PRECISION) * qk_scale
        ds = _score_grad(s, dp, C, h, tok, c_mask, N, R, J, G, BR, PRECISION)
        dq += _dot(ds, k.to(tl.float32), PRECISION)
    store_tile(DQ, rows, r_mask, D, BD, dq * qk_scale)


@triton.jit
def dk_dcoef_kernel(
    Q, K, C, DP, DK, DC, N, D, R, H, qk_scale,
    G: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr, BR: tl.constexpr,
    PRECISION: tl.constexpr,
):  # fmt: skip
    """dK of one key tile, and its rows of ``dC`` (fp32, atomically added: all images share ``C``)."""
    J: tl.constexpr = 2 * G + 1
    bh = tl.program_id(1)
    h = bh % H
    start_k = tl.program_id(0) * BN
    k, cols, c_mask = token_tile(K, bh, start_k, N, D, BN, BD)
    tok = start_k + tl.arange(0, BN)
    dk = tl.zeros((BN, BD), dtype=tl.float32)
    for start in range(0, N, BM):
        # Queries past N: q and dP load as 0, so their (nonzero) harmonics meet a zero dP.
        q, dp, _, _ = token_tiles(Q, DP, bh, start, N, D, R, BM, BD, BR)
        dp = dp.to(tl.float32)
        s = _dot(q, tl.trans(k), PRECISION) * qk_scale
        ds = _score_grad(s, dp, C, h, tok, c_mask, N, R, J, G, BR, PRECISION)
        dk += _dot(tl.trans(ds), q.to(tl.float32), PRECISION)
        silu, _ = _silu_and_grad(s)
        atomic_add_tile(DC, (h * J) * N + tok, c_mask, R, BR, _dot(tl.trans(silu), dp, PRECISION))
        c1 = tl.cos(s)
        s1 = tl.sin(s)
        cm = c1
        sm = s1
        for m in range(1, G + 1):
            dc_cos = _dot(tl.trans(cm), dp, PRECISION)
            dc_sin = _dot(tl.trans(sm), dp, PRECISION)
            atomic_add_tile(DC, (h * J + 2 * m - 1) * N + tok, c_mask, R, BR, dc_cos)
            atomic_add_tile(DC, (h * J + 2 * m) * N + tok, c_mask, R, BR, dc_sin)
            if m < G:
                cm, sm = _next_harmonic(cm, sm, c1, s1)
    store_tile(DK, cols, c_mask, D, BD, dk * qk_scale)

"""ContMix's ``@triton.jit`` kernels (see the package docstring).

Pixels are rows of the ``[B * G * H * W, C]`` (q) / ``[.., Cv]`` (v, out) matrices; ``proj`` is
``[B * G, C, K * K]``. A pixel tile is ``BI`` image rows by ``BJ`` columns of one image, flattened to
``BP = BI * BJ`` lanes. The forward, dQ and parameter programs walk the window ``RA`` window rows
per step: the step's ``[BP, BM]`` logits (offsets ``a0 * K + m``, ``m < RA * K``) are one ``tl.dot`` of
the q tile with those columns of ``proj`` plus the two biases, and the values are gathered by
pointer into ``[BP, BM, Cv]`` tiles (every pixel has its own window). Nothing of size
``[.., H, W, K * K]`` is ever written. The backward is deterministic, without atomics: dQ per pixel;
dV per value location over the pixels whose window holds it; dproj and the bias sums per
``(image, window-row step)`` over all pixels.

Window starts are computed inline, ``min(max(x - K // 2, 0), size - K)``, rather than by a helper:
under the interpreter every device-function call re-patches ``triton.language`` (~1 ms).
"""

import triton
import triton.language as tl

from attnzoo.kernels.common.tiles import load_tile, store_tile
from attnzoo.kernels.common.tuning import autotune


@triton.jit
def _pixel_tile(pid, H, W, NIB, NJB, BI: tl.constexpr, BJ: tl.constexpr):
    """Program ``pid``'s image ``bg`` (int64), the rows ``i`` and columns ``j`` of its ``BI x BJ``
    pixel tile (``[BI * BJ]`` each), their mask and their rows in the pixel matrices."""
    per_image = NIB * NJB
    bg = (pid // per_image).to(tl.int64)
    rem = pid % per_image
    p = tl.arange(0, BI * BJ)
    i = (rem // NJB) * BI + p // BJ
    j = (rem % NJB) * BJ + p % BJ
    mask = (i < H) & (j < W)
    return bg, i, j, mask, (bg * H + i) * W + j


@triton.jit
def _window_step(
    q, P, PB, RPB, V, bg, g, i, j, pm, a0, H, W, C, CV,
    K: tl.constexpr, RA: tl.constexpr, BM: tl.constexpr, BC: tl.constexpr, BCV: tl.constexpr,
    PRECISION: tl.constexpr,
):  # fmt: skip
    """Window rows ``a0 .. a0 + RA - 1`` of the pixels ``(i, j)``: the logits ``[BP, BM]`` (-inf past
    the window), the proj columns ``[BC, BM]`` that made them, the gathered values ``[BP, BM, BCV]``
    (fp32), and per slot ``m`` its offset ``(a, c)`` and validity."""
    R: tl.constexpr = 2 * K - 1
    m = tl.arange(0, BM)
    a = a0 + m // K
    c = m % K
    col = a0 * K + m  # = a * K + c
    mk = (m < RA * K) & (col < K * K)
    ch = tl.arange(0, BC)
    pa = tl.load(
        P + bg * C * K * K + ch[:, None] * (K * K) + col[None, :],
        mask=(ch < C)[:, None] & mk[None, :],
        other=0.0,
    ).to(tl.float32)
    s = tl.dot(q, pa, input_precision=PRECISION)
    s += tl.load(PB + col, mask=mk, other=0.0).to(tl.float32)[None, :]
    si = tl.minimum(tl.maximum(i - K // 2, 0), H - K)
    sj = tl.minimum(tl.maximum(j - K // 2, 0), W - K)
    inside = pm[:, None] & mk[None, :]
    rpb = RPB + (g * R + (si - i + K - 1)[:, None] + a[None, :]) * R + (sj - j + K - 1)[:, None] + c[None, :]
    s += tl.load(rpb, mask=inside, other=0.0).to(tl.float32)
    s = tl.where(mk[None, :], s, float("-inf"))
    cv = tl.arange(0, BCV)
    v_rows = (bg * H + si[:, None] + a[None, :]) * W + sj[:, None] + c[None, :]
    v_mask = inside[:, :, None] & (cv < CV)[None, None, :]
    v = tl.load(V + v_rows[:, :, None] * CV + cv[None, None, :], mask=v_mask, other=0.0)
    return s, pa, v.to(tl.float32), a, c, mk


@triton.jit
def _window_step_grad(
    q, do, lse, delta, P, PB, RPB, V, bg, g, i, j, pm, a0, H, W, C, CV,
    K: tl.constexpr, RA: tl.constexpr, BM: tl.constexpr, BC: tl.constexpr, BCV: tl.constexpr,
    PRECISION: tl.constexpr,
):  # fmt: skip
    """Softmax backward on one window step from the saved log-sum-exp: the logit gradients
    ``p * (dO . v - delta)`` ``[BP, BM]`` (0 on masked pixels and slots), the proj columns and the
    slots' offsets and validity (as :func:`_window_step`)."""
    s, pa, v, a, c, mk = _window_step(
        q, P, PB, RPB, V, bg, g, i, j, pm, a0, H, W, C, CV, K, RA, BM, BC, BCV, PRECISION
    )
    p = tl.where(pm[:, None] & mk[None, :], tl.exp(s - lse[:, None]), 0.0)
    dp = tl.sum(do[:, None, :] * v, axis=2)
    return p * (dp - delta[:, None]), pa, a, c, mk


@autotune(key=["H", "W", "C", "CV"])
@triton.jit
def contmix_fwd_kernel(
    Q, P, PB, RPB, V, O, LSE, G, H, W, C, CV, NIB, NJB,
    K: tl.constexpr, RA: tl.constexpr, BI: tl.constexpr, BJ: tl.constexpr, BM: tl.constexpr,
    BC: tl.constexpr, BCV: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    bg, i, j, pm, rows = _pixel_tile(tl.program_id(0), H, W, NIB, NJB, BI, BJ)
    g = bg % G
    q = load_tile(Q, rows, pm, C, BC).to(tl.float32)
    m_i = tl.full([BI * BJ], float("-inf"), tl.float32)
    l_i = tl.zeros([BI * BJ], tl.float32)
    acc = tl.zeros([BI * BJ, BCV], tl.float32)
    for a0 in range(0, K, RA):
        s, _, v, _, _, _ = _window_step(
            q, P, PB, RPB, V, bg, g, i, j, pm, a0, H, W, C, CV, K, RA, BM, BC, BCV, PRECISION
        )
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp(m_i - m_new)
        p = tl.exp(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.sum(p[:, :, None] * v, axis=1)
        m_i = m_new
    store_tile(O, rows, pm, CV, BCV, acc / l_i[:, None])
    tl.store(LSE + rows, m_i + tl.log(l_i), mask=pm)


@autotune(key=["H", "W", "C", "CV"])
@triton.jit
def contmix_bwd_dq_kernel(
    Q, P, PB, RPB, V, DO, LSE, DELTA, DQ, G, H, W, C, CV, NIB, NJB,
    K: tl.constexpr, RA: tl.constexpr, BI: tl.constexpr, BJ: tl.constexpr, BM: tl.constexpr,
    BC: tl.constexpr, BCV: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    bg, i, j, pm, rows = _pixel_tile(tl.program_id(0), H, W, NIB, NJB, BI, BJ)
    g = bg % G
    q = load_tile(Q, rows, pm, C, BC).to(tl.float32)
    do = load_tile(DO, rows, pm, CV, BCV).to(tl.float32)
    lse = tl.load(LSE + rows, mask=pm, other=0.0)
    delta = tl.load(DELTA + rows, mask=pm, other=0.0)
    dq = tl.zeros([BI * BJ, BC], tl.float32)
    for a0 in range(0, K, RA):
        ds, pa, _, _, _ = _window_step_grad(
            q, do, lse, delta, P, PB, RPB, V, bg, g, i, j, pm, a0, H, W, C, CV, K, RA, BM, BC, BCV, PRECISION
        )
        dq += tl.dot(ds, tl.trans(pa), input_precision=PRECISION)
    store_tile(DQ, rows, pm, C, BC, dq)


@autotune(key=["H", "W", "C", "CV", "NSTEP"])
@triton.jit
def contmix_bwd_params_kernel(
    Q, P, PB, RPB, V, DO, LSE, DELTA, DP, E, G, H, W, C, CV, NSTEP,
    K: tl.constexpr, RA: tl.constexpr, BI: tl.constexpr, BJ: tl.constexpr, BM: tl.constexpr,
    BC: tl.constexpr, BCV: tl.constexpr, BT: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """Program ``(bg, step)``, window rows ``a0 .. a0 + RA - 1``, over all pixels of image ``bg``:
    ``dproj[bg, :, a * K + c] = q^T ds`` and ``E[bg, a, th, tw, c]``, the logit gradients of offset
    ``(a, c)`` summed over the pixels whose window sits at ``(th, tw) = (s(i) - i + K - 1,
    s(j) - j + K - 1)`` (their rpb entry is ``(th + a, tw + c)``).

    ``th`` falls by 0 or 1 per row, so the ``BI`` rows of a row block hold the ``th`` values
    ``th_lo .. th_hi``; the block sums ``ds`` by key ``(th - th_lo) * BT + tw`` (a one-hot ``tl.dot``).
    ``th`` is ``K // 2`` on interior rows (summed in registers over blocks) and names exactly one row
    otherwise (stored when its block ends), so every entry of ``E`` has exactly one writer."""
    BP: tl.constexpr = BI * BJ
    pid = tl.program_id(0)
    bg = (pid // NSTEP).to(tl.int64)
    a0 = (pid % NSTEP) * RA
    g = bg % G
    key = tl.arange(0, BI * BT)
    m = tl.arange(0, BM)
    a = a0 + m // K
    c = m % K
    mk = (m < RA * K) & (a < K)
    dproj = tl.zeros([BC, BM], tl.float32)
    interior = tl.zeros([BT, BM], tl.float32)
    for i0 in range(0, H, BI):
        th_hi = tl.minimum(tl.maximum(i0 - K // 2, 0), H - K) - i0 + K - 1
        last = tl.minimum(i0 + BI, H) - 1
        th_lo = tl.minimum(tl.maximum(last - K // 2, 0), H - K) - last + K - 1
        block = tl.zeros([BI * BT, BM], tl.float32)
        for j0 in range(0, W, BJ):
            i = i0 + tl.arange(0, BP) // BJ
            j = j0 + tl.arange(0, BP) % BJ
            pm = (i < H) & (j < W)
            rows = (bg * H + i) * W + j
            q = load_tile(Q, rows, pm, C, BC).to(tl.float32)
            do = load_tile(DO, rows, pm, CV, BCV).to(tl.float32)
            lse = tl.load(LSE + rows, mask=pm, other=0.0)
            delta = tl.load(DELTA + rows, mask=pm, other=0.0)
            ds, _, _, _, _ = _window_step_grad(
                q, do, lse, delta, P, PB, RPB, V, bg, g, i, j, pm, a0, H, W, C, CV,
                K, RA, BM, BC, BCV, PRECISION,
            )  # fmt: skip
            dproj += tl.dot(tl.trans(q), ds, input_precision=PRECISION)
            th = tl.minimum(tl.maximum(i - K // 2, 0), H - K) - i + K - 1
            tw = tl.minimum(tl.maximum(j - K // 2, 0), W - K) - j + K - 1
            onehot = ((((th - th_lo) * BT + tw)[:, None] == key[None, :]) & pm[:, None]).to(tl.float32)
            block += tl.dot(tl.trans(onehot), ds, input_precision="ieee")
        kb = key // BT  # th - th_lo
        kt = key % BT  # tw
        by_th = tl.reshape(block, [BI, BT, BM])
        interior += tl.sum(tl.where((tl.arange(0, BI) == K // 2 - th_lo)[:, None, None], by_th, 0.0), axis=0)
        key_ok = (kb <= th_hi - th_lo) & (kb + th_lo != K // 2) & (kt < K)
        e_rows = ((bg * K + a[None, :]) * K + (kb + th_lo)[:, None]) * K * K + kt[:, None] * K + c[None, :]
        tl.store(E + e_rows, block, mask=key_ok[:, None] & mk[None, :])
    t = tl.arange(0, BT)
    e_mid = E + ((bg * K + a[None, :]) * K + K // 2) * K * K + t[:, None] * K + c[None, :]
    tl.store(e_mid, interior, mask=(t < K)[:, None] & mk[None, :])
    ch = tl.arange(0, BC)
    dp_ptrs = DP + bg * C * K * K + ch[:, None] * (K * K) + (a * K + c)[None, :]
    tl.store(dp_ptrs, dproj.to(DP.dtype.element_ty), mask=(ch < C)[:, None] & mk[None, :])


@autotune(key=["H", "W", "C", "CV"])
@triton.jit
def contmix_bwd_dv_kernel(
    Q, P, PB, RPB, DO, LSE, DV, G, H, W, C, CV, NIB, NJB,
    K: tl.constexpr, LH: tl.constexpr, LW: tl.constexpr, RI: tl.constexpr, BI: tl.constexpr,
    BJ: tl.constexpr, BM: tl.constexpr, BC: tl.constexpr, BCV: tl.constexpr,
):  # fmt: skip
    """Program ``(bg, tile of value locations (r, n))``: ``dv[r, n] = sum p[i, j, r - s(i), n - s(j)]
    dO[i, j]`` over the pixels whose window holds ``(r, n)``: rows ``i`` from ``i0(r) = 0 if r < K
    else r - K // 2`` (the first whose window reaches ``r``), at most ``LH`` of them (see
    ``op.candidates``), and columns alike: candidate ``(i, j) = (i0(r) + u, j0(n) + d)``, ``u < LH``,
    ``d < LW``, ``RI`` values of ``u`` per step (slot ``m`` of the ``BM`` axis is ``(u0 + m // LW,
    m % LW)``); a candidate counts where its window holds ``(r, n)``. Its logit is recomputed from
    its gathered q row and proj column."""
    R: tl.constexpr = 2 * K - 1
    bg, r, n, nm, loc = _pixel_tile(tl.program_id(0), H, W, NIB, NJB, BI, BJ)
    g = bg % G
    m = tl.arange(0, BM)
    j = tl.where(n < K, 0, n - K // 2)[:, None] + (m % LW)[None, :]  # [BP, BM]
    c = n[:, None] - tl.minimum(tl.maximum(j - K // 2, 0), W - K)
    cols_ok = nm[:, None] & (m < RI * LW)[None, :] & (j < W) & (c >= 0) & (c < K)
    ch = tl.arange(0, BC)
    cv = tl.arange(0, BCV)
    ch_mask = (ch < C)[None, None, :]
    dv = tl.zeros([BI * BJ, BCV], tl.float32)
    for u0 in range(0, LH, RI):
        u = u0 + m // LW
        i = tl.where(r < K, 0, r - K // 2)[:, None] + u[None, :]  # [BP, BM]
        a = r[:, None] - tl.minimum(tl.maximum(i - K // 2, 0), H - K)
        ok = cols_ok & (u < LH)[None, :] & (i < H) & (a >= 0) & (a < K)
        pix = (bg * H + i) * W + j
        q = tl.load(Q + pix[:, :, None] * C + ch[None, None, :], mask=ok[:, :, None] & ch_mask, other=0.0)
        off = a * K + c
        pcol = tl.load(
            P + bg * C * K * K + ch[None, None, :] * (K * K) + off[:, :, None],
            mask=ok[:, :, None] & ch_mask,
            other=0.0,
        )
        s = tl.sum(q.to(tl.float32) * pcol.to(tl.float32), axis=2)
        s += tl.load(PB + off, mask=ok, other=0.0).to(tl.float32)
        rpb = RPB + (g * R + r[:, None] - i + K - 1) * R + n[:, None] - j + K - 1
        s += tl.load(rpb, mask=ok, other=0.0).to(tl.float32)
        p = tl.where(ok, tl.exp(s - tl.load(LSE + pix, mask=ok, other=0.0)), 0.0)
        do_mask = ok[:, :, None] & (cv < CV)[None, None, :]
        do = tl.load(DO + pix[:, :, None] * CV + cv[None, None, :], mask=do_mask, other=0.0)
        dv += tl.sum(p[:, :, None] * do.to(tl.float32), axis=1)
    store_tile(DV, loc, nm, CV, BCV, dv)

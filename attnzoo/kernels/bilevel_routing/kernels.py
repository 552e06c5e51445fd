"""Bi-level routing attention's ``@triton.jit`` kernels (see the package docstring).

Tokens live in rows of the ``[B * heads * H * W, D]`` matrices; region ``r`` holds tokens ``0 .. T``
(row-major, ``RH x RW``), those past the map border masked. Every program owns a block of rows (its
*own* side: queries in the forward and dQ, keys in dK / dV) and walks a list of regions (the other,
*listed* side), flattened to ``len * T`` token rows so that short regions share a tile.

Packing. When a region has fewer tokens than a tile (``T < 16``), an own block holds ``G = BLOCK //
TP`` whole regions, ``TP`` token slots each (``T`` rounded up to a power of two; ``G = 1`` for
``T > 8``). Their lists are merged by :func:`bra_table_kernel` into one ascending list of distinct
regions and a multiplicity table ``MULT[slot, g]``: how often own region ``g`` routes to (or is
routed by) listed region ``slot``. A pair with multiplicity 0 is masked; ``m > 1`` (a region routed
twice) weighs its keys ``m`` times, as the gathered reference counts them. Forward / dQ blocks of one
region (``G = 1``) read their ``idx`` row directly; dK / dV always walk the table (the inversion).

Every kernel writes (never accumulates into) its outputs, so all are autotuned, keyed on the shape
arguments that also fix their tiles.
"""

import triton
import triton.language as tl

from attnzoo.kernels.common.tiles import load_tile, softmax_grad_tile, store_tile
from attnzoo.kernels.common.tuning import autotune

_SHAPE = ["NR", "T", "TOPK", "DQK", "DV"]


@triton.jit
def _token_rows(tok, region, valid, bh, H, W, NRW, RH, RW):
    """Rows of token ``tok`` of region ``region`` in slice ``bh``, and ``valid`` & inside the map."""
    y = (region // NRW) * RH + tok // RW
    x = (region % NRW) * RW + tok % RW
    return (bh * H + y) * W + x, valid & (y < H) & (x < W)


@triton.jit
def _own_block(pid, NB, bh, T, H, W, NR, NRW, RH, RW, TP: tl.constexpr, BLOCK: tl.constexpr):
    """Group ``pid // NB``, and per row its slot ``g`` in the group, its matrix row and mask.

    ``TP == BLOCK``: block ``pid % NB`` of the tokens of region ``pid // NB`` (``g = 0``). Otherwise
    (``NB == 1``): regions ``grp * G .. grp * G + G`` with ``TP`` slots each, slots past ``T`` masked.
    """
    grp = pid // NB
    i = tl.arange(0, BLOCK)
    region = grp * (BLOCK // TP) + i // TP
    tok = (pid % NB) * BLOCK + i % TP
    rows, mask = _token_rows(tok, region, (tok < T) & (region < NR), bh, H, W, NRW, RH, RW)
    return grp, i // TP, rows, mask


@triton.jit
def _region_list(IDX, COUNT, LIST, b, grp, NR, T, TOPK, CAP, G: tl.constexpr, TABLE: tl.constexpr):
    """The listed side of own group ``grp``: ``(table, base, n)``, entries ``base ..`` of ``table``,
    ``n`` token rows. ``TABLE``: the merged list of :func:`bra_table_kernel`, else row ``grp`` of
    ``idx`` (one region per group, every entry once)."""
    if TABLE:
        ng = (NR + G - 1) // G
        table, base, n = LIST, (b * ng + grp) * CAP, tl.load(COUNT + b * ng + grp) * T
    else:
        table, base, n = IDX, (b * NR + grp) * TOPK, TOPK * T
    return table, base, n


@triton.jit
def _listed_block(TABLE, base, start, n, bh, T, H, W, NR, NRW, RH, RW, BLOCK: tl.constexpr):
    """Slot, rows and mask of entries ``start .. start + BLOCK`` of a region list of ``n = len * T``
    tokens: entry ``e`` is token ``e % T`` of region ``TABLE[base + e // T]``. A region outside
    ``[0, NR)`` (an unchecked routing index, as in a compiled graph) is masked: never read."""
    e = start + tl.arange(0, BLOCK)
    in_range = e < n
    slot = e // T
    region = tl.load(TABLE + base + slot, mask=in_range, other=0)
    valid = in_range & (region >= 0) & (region < NR)
    rows, mask = _token_rows(e % T, tl.where(valid, region, 0), valid, bh, H, W, NRW, RH, RW)
    return slot, rows, mask


@triton.jit
def _multiplicity(MULT, base, slot, listed_mask, g, G: tl.constexpr, TABLE: tl.constexpr):
    """fp32 weights of a (query, key) tile: how often each own row's region meets each listed row's
    region (0: masked). ``slot`` / ``listed_mask`` and ``g`` come shaped to broadcast to the tile;
    with one own region (``G == 1``) or no table the weights depend on the listed row only, and stay
    a vector. Without a table every valid listed region counts once."""
    if not TABLE:
        mult = listed_mask
    elif G == 1:
        mult = tl.load(MULT + base + slot, mask=listed_mask, other=0)
    else:
        mult = tl.load(MULT + (base + slot) * G + g, mask=listed_mask, other=0)
    return mult.to(tl.float32)


@triton.jit
def _query_side(Q, DO, LSE, DELTA, rows, mask, DQK, DV, BD: tl.constexpr, BDV: tl.constexpr):
    """What the backward needs of a query block: ``q``, ``dO``, the log-sum-exp and ``delta``."""
    q = load_tile(Q, rows, mask, DQK, BD)
    do = load_tile(DO, rows, mask, DV, BDV)
    lse = tl.load(LSE + rows, mask=mask, other=0.0)
    delta = tl.load(DELTA + rows, mask=mask, other=0.0)
    return q, do, lse, delta


@triton.jit
def _routing_counts(IDX, b, src, src_ok, dst, dst_ok, NR, TOPK, JB: tl.constexpr):
    """``[len(dst), len(src)]``: how often query region ``src`` routes to key region ``dst``, reading
    ``JB`` routing entries of every ``src`` row at once."""
    cnt = tl.zeros((dst.shape[0], src.shape[0]), tl.int32)
    for j0 in range(0, TOPK, JB):
        j = j0 + tl.arange(0, JB)
        ok = src_ok[:, None] & (j < TOPK)[None, :]
        key = tl.load(IDX + (b * NR + src[:, None]) * TOPK + j[None, :], mask=ok, other=-1)
        hit = (key[None, :, :] == dst[:, None, None]) & dst_ok[:, None, None]
        cnt += tl.sum(hit.to(tl.int32), axis=2)
    return cnt


@autotune(key=["NR", "TOPK", "G", "FIRST"])
@triton.jit
def bra_table_kernel(
    IDX, COUNT, LIST, MULT, NR, TOPK, CAP, FIRST,
    G: tl.constexpr, BR: tl.constexpr, JB: tl.constexpr,
):  # fmt: skip
    """Merged region lists of groups of ``G`` own regions, by counting (no sort; deterministic).

    Direction ``d = FIRST + pid // NG``: 0 lists the key regions a query group routes to (forward,
    dQ), 1 the query regions routing to a key group (dK / dV). Tables are ``[direction, B, NG, ...]``:
    per group, ``COUNT`` regions in ``LIST[.., :CAP]``, ascending, with ``MULT[.., CAP, G]``.
    """
    ng = (NR + G - 1) // G
    d = FIRST + tl.program_id(0) // ng
    grp = tl.program_id(0) % ng
    b = tl.program_id(1)
    own = grp * G + tl.arange(0, G)
    own_ok = own < NR
    row = (d * tl.num_programs(1) + b) * ng + grp
    total = 0
    for l0 in range(0, NR, BR):
        lst = l0 + tl.arange(0, BR)
        lst_ok = lst < NR
        if d == 0:
            cnt = _routing_counts(IDX, b, own, own_ok, lst, lst_ok, NR, TOPK, JB)
        else:
            cnt = tl.trans(_routing_counts(IDX, b, lst, lst_ok, own, own_ok, NR, TOPK, JB))
        hit = tl.sum(cnt, axis=1) > 0
        pos = row * CAP + total + tl.cumsum(hit.to(tl.int32), axis=0) - 1
        tl.store(LIST + pos, lst, mask=hit)
        tl.store(MULT + pos[:, None] * G + tl.arange(0, G)[None, :], cnt, mask=hit[:, None])
        total += tl.sum(hit.to(tl.int32), axis=0)
    tl.store(COUNT + row, total)


@autotune(key=_SHAPE)
@triton.jit
def bra_fwd_kernel(
    Q, K, V, IDX, COUNT, LIST, MULT, O, LSE, scale,
    H, W, NR, NRW, RH, RW, T, TOPK, HEADS, DQK, DV, NB, CAP,
    BQ: tl.constexpr, BK: tl.constexpr, TP: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr,
    PRECISION: tl.constexpr, TABLE: tl.constexpr,
):  # fmt: skip
    """Output and log-sum-exp of an own query block: one online softmax over its listed keys."""
    bh = tl.program_id(1)
    b = bh // HEADS
    grp, g, q_rows, q_mask = _own_block(tl.program_id(0), NB, bh, T, H, W, NR, NRW, RH, RW, TP, BQ)
    table, base, n = _region_list(IDX, COUNT, LIST, b, grp, NR, T, TOPK, CAP, BQ // TP, TABLE)
    q = load_tile(Q, q_rows, q_mask, DQK, BD)
    m_i = tl.full([BQ], float("-inf"), tl.float32)
    l_i = tl.zeros([BQ], tl.float32)
    acc = tl.zeros([BQ, BDV], tl.float32)
    for start in range(0, n, BK):
        slot, k_rows, k_mask = _listed_block(table, base, start, n, bh, T, H, W, NR, NRW, RH, RW, BK)
        mult = _multiplicity(MULT, base, slot[None, :], k_mask[None, :], g[:, None], BQ // TP, TABLE)
        k = load_tile(K, k_rows, k_mask, DQK, BD)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
        s = tl.where(mult > 0, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp(m_i - m_safe)
        p = tl.exp(s - m_safe[:, None])
        if TABLE:  # repeats weigh more; without a table, masked keys already have p == 0
            p *= mult
        l_i = l_i * alpha + tl.sum(p, axis=1)
        v = load_tile(V, k_rows, k_mask, DV, BDV)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    l_safe = tl.where(l_i == 0.0, 1.0, l_i)
    store_tile(O, q_rows, q_mask, DV, BDV, acc / l_safe[:, None])
    tl.store(LSE + q_rows, m_i + tl.log(l_safe), mask=q_mask)


@autotune(key=_SHAPE)
@triton.jit
def bra_bwd_dq_kernel(
    Q, K, V, IDX, COUNT, LIST, MULT, O, DO, LSE, DELTA, DQ, scale,
    H, W, NR, NRW, RH, RW, T, TOPK, HEADS, DQK, DV, NB, CAP,
    BQ: tl.constexpr, BK: tl.constexpr, TP: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr,
    PRECISION: tl.constexpr, TABLE: tl.constexpr,
):  # fmt: skip
    """dQ of an own query block; also writes its rows' ``delta = rowsum(dO * O)`` for dK / dV."""
    bh = tl.program_id(1)
    b = bh // HEADS
    grp, g, q_rows, q_mask = _own_block(tl.program_id(0), NB, bh, T, H, W, NR, NRW, RH, RW, TP, BQ)
    table, base, n = _region_list(IDX, COUNT, LIST, b, grp, NR, T, TOPK, CAP, BQ // TP, TABLE)
    q = load_tile(Q, q_rows, q_mask, DQK, BD)
    do = load_tile(DO, q_rows, q_mask, DV, BDV)
    o = load_tile(O, q_rows, q_mask, DV, BDV)
    delta = tl.sum(do.to(tl.float32) * o.to(tl.float32), axis=1)
    tl.store(DELTA + q_rows, delta, mask=q_mask)
    lse = tl.load(LSE + q_rows, mask=q_mask, other=0.0)
    dq = tl.zeros([BQ, BD], tl.float32)
    for start in range(0, n, BK):
        slot, k_rows, k_mask = _listed_block(table, base, start, n, bh, T, H, W, NR, NRW, RH, RW, BK)
        mult = _multiplicity(MULT, base, slot[None, :], k_mask[None, :], g[:, None], BQ // TP, TABLE)
        k = load_tile(K, k_rows, k_mask, DQK, BD)
        v = load_tile(V, k_rows, k_mask, DV, BDV)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
        _, ds = softmax_grad_tile(s, lse, delta, do, v, q_mask[:, None] & (mult > 0), PRECISION)
        dq += tl.dot((ds * mult).to(k.dtype), k, input_precision=PRECISION)
    store_tile(DQ, q_rows, q_mask, DQK, BD, dq * scale)


@autotune(key=_SHAPE)
@triton.jit
def bra_bwd_dkdv_kernel(
    Q, K, V, COUNT, LIST, MULT, DO, LSE, DELTA, DK, DVV, scale,
    H, W, NR, NRW, RH, RW, T, TOPK, HEADS, DQK, DV, NB, CAP,
    BQ: tl.constexpr, BK: tl.constexpr, TP: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr,
    PRECISION: tl.constexpr,
):  # fmt: skip
    """dK / dV of an own key block over the merged list of the query regions routing to it."""
    bh = tl.program_id(1)
    b = bh // HEADS
    grp, g, k_rows, k_mask = _own_block(tl.program_id(0), NB, bh, T, H, W, NR, NRW, RH, RW, TP, BK)
    table, base, n = _region_list(LIST, COUNT, LIST, b, grp, NR, T, TOPK, CAP, BK // TP, True)
    k = load_tile(K, k_rows, k_mask, DQK, BD)
    v = load_tile(V, k_rows, k_mask, DV, BDV)
    dk = tl.zeros([BK, BD], tl.float32)
    dvacc = tl.zeros([BK, BDV], tl.float32)
    for start in range(0, n, BQ):
        slot, q_rows, q_mask = _listed_block(table, base, start, n, bh, T, H, W, NR, NRW, RH, RW, BQ)
        mult = _multiplicity(MULT, base, slot[:, None], q_mask[:, None], g[None, :], BK // TP, True)
        q, do, lse, delta = _query_side(Q, DO, LSE, DELTA, q_rows, q_mask, DQK, DV, BD, BDV)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
        p, ds = softmax_grad_tile(s, lse, delta, do, v, (mult > 0) & k_mask[None, :], PRECISION)
        dvacc += tl.dot(tl.trans((p * mult).to(do.dtype)), do, input_precision=PRECISION)
        dk += tl.dot(tl.trans((ds * mult).to(q.dtype)), q, input_precision=PRECISION)
    store_tile(DK, k_rows, k_mask, DQK, BD, dk * scale)
    store_tile(DVV, k_rows, k_mask, DV, BDV, dvacc)

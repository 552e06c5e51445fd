"""``@triton.jit`` building blocks of linear attention's token reductions (as ``fla/ops/common``).

Linear attention reduces the ``N`` tokens of each (image, head) slice to a few vectors or small
matrices (InfSA-linear: an energy-weighted query, a relu-weighted value; MALA / InLine:
``sum_j phi(k_j) v_j^T``, ``mean(k)``, ``mean(v)``), walking token tiles (InfSA-linear: one program
per slice), then applies them per query. The reductions run in fp32 whatever the input dtype: sums
over ``N`` tokens lose digits in 16 bits.

Long slices (tens of thousands of tokens, one or two heads) split the walk over token chunks: each
(slice, chunk) program writes its partial sums as one *packed* fp32 row -- a ``[DA, DB]`` matrix, then
a ``DA`` and a ``DB`` vector (:func:`store_packed` / :func:`load_packed`) -- and :func:`sum_chunks`
adds a slice's rows in a fixed order (deterministic, no atomics).
"""

import triton
import triton.language as tl

from attnzoo.kernels.common.tiles import token_tile

__all__ = [
    "dot_f32",
    "load_packed",
    "outer_product_sum",
    "store_packed",
    "sum_chunks",
    "token_tile_f32",
    "weighted_row_sum",
]


@triton.jit
def token_tile_f32(X, bh, start, N, width, BT: tl.constexpr, BW: tl.constexpr):
    """:func:`~attnzoo.kernels.common.tiles.token_tile` in fp32: ``(tile, rows, mask)``."""
    x, rows, mask = token_tile(X, bh, start, N, width, BT, BW)
    return x.to(tl.float32), rows, mask


@triton.jit
def weighted_row_sum(w, x):
    """``sum_j w_j x_j`` over the rows of a ``[BT, BW]`` tile (masked rows hold 0): one tile's share
    of a token reduction, accumulated over tiles by the caller."""
    return tl.sum(w[:, None] * x, axis=0)


@triton.jit
def outer_product_sum(x, y, PRECISION: tl.constexpr):
    """``sum_j x_j y_j^T`` over the rows of ``[BT, BX]`` and ``[BT, BY]`` tiles (masked rows hold 0):
    one tile's share of ``K^T V``, in fp32. 16-bit tiles multiply on 16-bit tensor cores (their
    products are exact in fp32), fp32 tiles at ``PRECISION``."""
    return tl.dot(tl.trans(x), y, input_precision=PRECISION)


@triton.jit
def dot_f32(a, b, PRECISION: tl.constexpr):
    """``a @ b`` for an input-dtype ``a`` and an fp32 ``b`` (a reduced matrix, which may exceed the
    fp16 range), accurate to ~fp32 at either precision.

    ``"ieee"`` (fp32 inputs): one exact fp32 dot. ``"tf32"`` (16-bit inputs): ``a`` is exact in tf32
    (fp16 and bf16 keep at most tf32's 10 mantissa bits), so only ``b`` is split, ``b = hi + lo`` with
    ``hi`` truncated to tf32, and two tf32 dots give ~2^-21 relative error instead of tf32's 2^-11. This
    matters where a product nearly cancels against another term (MALA's ``(q KV) c - z vbar``).
    """
    a32 = a.to(tl.float32)
    if PRECISION == "ieee":
        return tl.dot(a32, b, input_precision="ieee")
    hi = (b.to(tl.uint32, bitcast=True) & 0xFFFFE000).to(tl.float32, bitcast=True)
    return tl.dot(a32, hi, input_precision="tf32") + tl.dot(a32, b - hi, input_precision="tf32")


@triton.jit
def store_packed(P, row, DA, DB, BA: tl.constexpr, BB: tl.constexpr, mat, va, vb):
    """Store ``mat`` ``[BA, BB]``, ``va`` ``[BA]`` and ``vb`` ``[BB]`` (their first ``DA`` / ``DB``
    entries) as packed fp32 row ``row`` of ``P`` (``DA * DB + DA + DB`` numbers per row)."""
    base = P + row * (DA * DB + DA + DB)
    a = tl.arange(0, BA)
    b = tl.arange(0, BB)
    tl.store(base + a[:, None] * DB + b[None, :], mat, mask=(a < DA)[:, None] & (b < DB)[None, :])
    tl.store(base + DA * DB + a, va, mask=a < DA)
    tl.store(base + DA * DB + DA + b, vb, mask=b < DB)


@triton.jit
def load_packed(P, row, DA, DB, BA: tl.constexpr, BB: tl.constexpr):
    """Packed row ``row`` of ``P`` as ``(mat [BA, BB], va [BA], vb [BB])``, 0 past ``DA`` / ``DB``."""
    base = P + row * (DA * DB + DA + DB)
    a = tl.arange(0, BA)
    b = tl.arange(0, BB)
    mat = tl.load(base + a[:, None] * DB + b[None, :], mask=(a < DA)[:, None] & (b < DB)[None, :], other=0.0)
    va = tl.load(base + DA * DB + a, mask=a < DA, other=0.0)
    vb = tl.load(base + DA * DB + DA + b, mask=b < DB, other=0.0)
    return mat, va, vb


@triton.jit
def sum_chunks(P, s, NCHUNK, W, cols, mask, BW: tl.constexpr):
    """``sum_c P[s * NCHUNK + c, cols]`` over slice ``s``'s ``NCHUNK`` partial rows (``W`` wide), in
    chunk order: the deterministic second stage of a chunked token reduction."""
    acc = tl.zeros((BW,), dtype=tl.float32)
    for c in range(0, NCHUNK):
        acc += tl.load(P + (s * NCHUNK + c) * W + cols, mask=mask, other=0.0)
    return acc

"""``@triton.jit`` tile helpers every kernel repeats: masked row-tile loads and stores, and the
softmax-gradient tile of flash-style backward passes.

A "row-major matrix" is a tensor viewed as ``[rows, width]``; a tile is the ``[len(rows), BW]`` block
of the given rows and the first ``BW`` columns, with rows outside ``row_mask`` and columns past
``width`` masked (loaded as 0, never stored). The helpers inline: a kernel that calls them runs the
same loads, stores and arithmetic as one that spells them out.
"""

import triton
import triton.language as tl

__all__ = [
    "atomic_add_tile",
    "load_row",
    "load_tile",
    "softmax_grad_tile",
    "store_row",
    "store_tile",
    "token_tile",
    "token_tiles",
]


@triton.jit
def load_tile(X, rows, row_mask, width, BW: tl.constexpr):
    """The ``rows`` of row-major ``X`` (``width`` columns), 0 where masked."""
    cols = tl.arange(0, BW)
    mask = row_mask[:, None] & (cols < width)[None, :]
    return tl.load(X + rows[:, None] * width + cols[None, :], mask=mask, other=0.0)


@triton.jit
def store_tile(X, rows, row_mask, width, BW: tl.constexpr, value):
    """Store ``value`` (cast to ``X``'s dtype) at the ``rows`` of row-major ``X``."""
    cols = tl.arange(0, BW)
    mask = row_mask[:, None] & (cols < width)[None, :]
    tl.store(X + rows[:, None] * width + cols[None, :], value.to(X.dtype.element_ty), mask=mask)


@triton.jit
def atomic_add_tile(X, rows, row_mask, width, BW: tl.constexpr, value):
    """Atomically add ``value`` at the ``rows`` of row-major ``X`` (for rows several programs own)."""
    cols = tl.arange(0, BW)
    mask = row_mask[:, None] & (cols < width)[None, :]
    tl.atomic_add(X + rows[:, None] * width + cols[None, :], value, mask=mask)


@triton.jit
def load_row(X, row, width, BW: tl.constexpr):
    """Row ``row`` of row-major ``X`` as a ``[BW]`` vector, 0 past ``width``."""
    cols = tl.arange(0, BW)
    return tl.load(X + row * width + cols, mask=cols < width, other=0.0)


@triton.jit
def store_row(X, row, width, BW: tl.constexpr, value):
    """Store the ``[BW]`` vector ``value`` (cast to ``X``'s dtype) as row ``row`` of row-major ``X``."""
    cols = tl.arange(0, BW)
    tl.store(X + row * width + cols, value.to(X.dtype.element_ty), mask=cols < width)


@triton.jit
def token_tile(X, bh, start, N, width, BT: tl.constexpr, BW: tl.constexpr):
    """Tokens ``start .. start + BT`` of slice ``bh`` of a ``[BH, N, width]`` tensor (0 past ``N``),
    with their rows in the ``[BH * N, width]`` matrix (to store results at) and their mask."""
    tok = start + tl.arange(0, BT)
    mask = tok < N
    rows = bh * N + tok
    return load_tile(X, rows, mask, width, BW), rows, mask


@triton.jit
def token_tiles(X, Y, bh, start, N, DX, DY, BT: tl.constexpr, BX: tl.constexpr, BY: tl.constexpr):
    """:func:`token_tile` of ``X`` (``DX`` wide) and ``Y`` (``DY`` wide) on the same tokens (keys and
    values, queries and output gradients): ``(x, y, rows, mask)``."""
    x, rows, mask = token_tile(X, bh, start, N, DX, BT, BX)
    return x, load_tile(Y, rows, mask, DY, BY), rows, mask


@triton.jit
def softmax_grad_tile(s, lse, delta, do, v, mask, PRECISION: tl.constexpr):
    """Softmax backward on one (query, key) tile from the saved log-sum-exp: the probabilities ``p``
    (0 where ``mask`` is false) and ``ds = p * (dO V^T - delta)``, ``delta = rowsum(dO * O)``."""
    p = tl.exp(s - lse[:, None])
    p = tl.where(mask, p, 0.0)
    dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
    return p, p * (dp - delta[:, None])

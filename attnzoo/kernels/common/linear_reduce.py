"""``@triton.jit`` building blocks of linear attention's token reductions (as ``fla/ops/common``).

Linear attention reduces the ``N`` tokens of each (image, head) slice to a few vectors or small
matrices (InfSA-linear: an energy-weighted query, a relu-weighted value; MALA / InLine:
``sum_j phi(k_j) v_j^T``, ``mean(k)``, ``mean(v)``), one program per slice walking token tiles, then
applies them per query. The reductions run in fp32 whatever the input dtype: sums over ``N`` tokens
lose digits in 16 bits.
"""

import triton
import triton.language as tl

from attnzoo.kernels.common.tiles import token_tile

__all__ = ["token_tile_f32", "weighted_row_sum"]


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

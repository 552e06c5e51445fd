"""Host-side integer rules: powers of two, ceiling division, and how a token reduction is split over
programs for the ops whose reductions run in chunks (linear attention, InfSA's linear mode).

Plain Python without Triton, so an op's module-level budget queries import anywhere, and cheap: on
the host, ``triton.cdiv`` and ``triton.next_power_of_2`` are constexpr-function wrappers costing
microseconds a call (5.3 and 2.7 us against 0.2 us here, triton 3.8 on a 2-core CPU), several times
per op call, on the launch path that already bounds the ops at small shapes."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["cdiv", "next_pow2", "split_tokens"]


def next_pow2(n: int) -> int:
    """The smallest power of two ``>= n`` (1 for ``n <= 1``)."""
    return 1 << max(0, n - 1).bit_length()


def cdiv(a: int, b: int) -> int:
    """``ceil(a / b)`` for positive ``b``."""
    return -(-a // b)


def split_tokens(slices: int, n: int, token_tile: int, budget: Mapping[str, int]) -> tuple[int, int]:
    """``(chunk, chunks)``: tokens per program and programs per slice of ``n`` tokens.

    A chunk is a power of two, at least ``budget["min_chunk"]`` and the (power-of-two) token tile,
    sized so that ``slices * chunks`` nears ``budget["programs"]``; ``"max_chunk"`` caps a chunk's
    tokens and ``"max_chunks"`` a slice's programs, where the budget names them.
    """
    chunk = max(budget["min_chunk"], next_pow2(cdiv(slices * n, budget["programs"])))
    if "max_chunk" in budget:
        chunk = min(chunk, budget["max_chunk"])
    if "max_chunks" in budget:
        chunk = max(chunk, next_pow2(cdiv(n, budget["max_chunks"])))
    chunk = max(token_tile, chunk)
    return chunk, max(1, cdiv(n, chunk))

"""MALA / InLine linear attention's public entry point (checks, dispatch) and its Triton op, forward +
backward."""

from __future__ import annotations

import math

import torch

from attnzoo.kernels.common.chunks import split_tokens
from attnzoo.kernels.common.host import run_op
from attnzoo.kernels.dispatch import triton_available, triton_interpreter, use_triton
from attnzoo.kernels.linear_attention.reference import (
    KINDS,
    check,
    linear_attention_reference,
    resolve_scale,
)

__all__ = ["MAX_WIDTH", "chunking", "linear_attention", "tile_budget"]

MAX_WIDTH = 128  # D and Dv: the [D, Dv] fp32 statistics live in registers

# Token chunks of the reductions: at least ``min_chunk`` tokens per program (so the partial row it
# writes, D * Dv + D + Dv floats, stays small next to the tokens it reads), at most ``max_chunk``,
# aiming at ``programs`` programs in all (MALA's linear stages have 1-2 heads, so at batch 1-2 a
# slice must be split to fill the GPU). ``token`` caps the token tile. Not tuned on a GPU yet. Under
# the interpreter every program costs Python overhead: larger tiles, few programs, yet several
# chunks for the kernel battery's longer problems, so it covers the partial-row path.
GPU_TILES = {"token": 64, "min_chunk": 512, "max_chunk": 8192, "programs": 512}
INTERPRETER_TILES = {"token": 128, "min_chunk": 128, "max_chunk": 1024, "programs": 8}


def _supported(q: torch.Tensor, v: torch.Tensor) -> bool:
    return (
        q.dtype in (torch.float16, torch.bfloat16, torch.float32)
        and q.shape[-1] <= MAX_WIDTH
        and v.shape[-1] <= MAX_WIDTH
    )


def tile_budget() -> dict[str, int]:
    """The chunk / tile budget in force (:data:`INTERPRETER_TILES` under ``TRITON_INTERPRET=1``)."""
    return INTERPRETER_TILES if triton_interpreter() else GPU_TILES


def chunking(slices: int, n: int, token_tile: int) -> tuple[int, int]:
    """``(chunk, chunks)``: tokens per reduction program and programs per slice, under the budget in
    force (:func:`~attnzoo.kernels.common.chunks.split_tokens`)."""
    return split_tokens(slices, n, token_tile, tile_budget())


def linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    zq: torch.Tensor | None = None,
    zk: torch.Tensor | None = None,
    *,
    kind: str,
    scale: float | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """MALA (``kind="mala"``) or InLine (``"inline"``) linear attention through the dispatch rule
    (Triton kernel or :func:`linear_attention_reference`), so both families share one fast core.

    ``q``, ``k``: ``[..., N, D]`` (MALA: RoPE-rotated); ``v``: ``[..., N, Dv]``; ``zq``, ``zk``: the
    ``[..., N, D]`` tensors of the per-token normaliser ``z`` (default ``q``, ``k``; MALA: un-rotated).
    Returns ``[..., N, Dv]`` in v's dtype.
    """
    zq = q if zq is None else zq
    zk = k if zk is None else zk
    check(q, k, v, zq, zk, kind)
    if use_triton(q, k, v, zq, zk, supported=_supported(q, v), op="linear_attention"):
        out, _ = run_op(
            "linear_attention",
            *(t.contiguous() for t in (q, k, v, zq, zk)),
            kind,
            resolve_scale(q, scale),
            float(eps),
        )
        return out
    return linear_attention_reference(q, k, v, zq, zk, kind=kind, scale=scale, eps=eps)


def _width(q: torch.Tensor, v: torch.Tensor) -> int:
    """Numbers per packed statistics row: ``D * Dv + D + Dv``."""
    d, dv = q.shape[-1], v.shape[-1]
    return d * dv + d + dv


if triton_available():
    from torch.library import wrap_triton

    from attnzoo.kernels.common.chunks import cdiv
    from attnzoo.kernels.common.host import FP32_TOKEN_TILE, define_op, f32_like, pow2, precision
    from attnzoo.kernels.linear_attention.kernels import (
        finish_kernel,
        key_grad_kernel,
        output_kernel,
        query_grad_kernel,
        reduce_kernel,
    )

    FINISH_WIDTH = 1024  # packed-row columns per finish program

    def _flat(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(-1, *t.shape[-2:]).contiguous()

    def _meta(q: torch.Tensor, v: torch.Tensor) -> dict:
        """Widths and dot precision (the warps are tuned per shape: common.tuning)."""
        bd, bdv = pow2(q.shape[-1]), pow2(v.shape[-1])
        return dict(BD=bd, BDV=bdv, PRECISION=precision(q))

    def _token_tile(n: int) -> int:
        """Tokens per tile: a power of two in ``[16, budget]`` (64 on a GPU, so registers stay bounded)."""
        return pow2(n, cap=tile_budget()["token"])

    def _partial(stats: torch.Tensor, chunks: int) -> torch.Tensor:
        """Where the chunk kernel writes: ``stats`` itself for one chunk per slice (final rows),
        else one partial row per (slice, chunk)."""
        if chunks == 1:
            return stats
        return torch.empty((stats.shape[0] * chunks, stats.shape[1]), **f32_like(stats))

    def _finish(
        partial: torch.Tensor, stats: torch.Tensor, chunks: int, d: int, dv: int, fa: float, fb: float
    ):
        """Sum each slice's partial rows into ``stats`` in chunk order, the vectors times ``fa`` / ``fb``
        (nothing to do when the chunk kernel wrote the final rows)."""
        if chunks > 1:
            grid = (cdiv(stats.shape[1], FINISH_WIDTH), stats.shape[0])
            wrap_triton(finish_kernel)[grid](partial, stats, chunks, d, dv, fa, fb, BW=FINISH_WIDTH)

    def _check_kind(kind: str) -> bool:
        if kind not in KINDS:
            raise ValueError(f"linear_attention kind must be one of {KINDS}, got {kind!r}")
        return kind == "mala"

    def _forward(
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        zq: torch.Tensor,
        zk: torch.Tensor,
        kind: str,
        scale: float,
        eps: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mala = _check_kind(kind)
        n, d, dv = q.shape[-2], q.shape[-1], v.shape[-1]
        out = torch.empty((*q.shape[:-1], dv), device=q.device, dtype=q.dtype)
        slices = math.prod(q.shape[:-2])
        stats = torch.empty((slices, _width(q, v)), **f32_like(q))
        q3, k3, v3, zq3, zk3 = (_flat(t) for t in (q, k, v, zq, zk))
        bt = _token_tile(n)
        chunk, chunks = chunking(slices, n, bt)
        partial = _partial(stats, chunks)
        wrap_triton(reduce_kernel)[(chunks, slices)](
            k3, v3, zk3, partial, n, d, dv, chunk, chunks, 1.0 / n, 1.0 / n,
            BT=bt, FINAL=chunks == 1, **_meta(q, v),
        )  # fmt: skip
        _finish(partial, stats, chunks, d, dv, 1.0 / n, 1.0 / n)
        wrap_triton(output_kernel)[(cdiv(n, bt), slices)](
            q3, zq3, stats, out, n, d, dv, scale, scale / n, eps, BM=bt, MALA=mala, **_meta(q, v)
        )
        return out, stats

    def _backward(
        grad_out: torch.Tensor,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        zq: torch.Tensor,
        zk: torch.Tensor,
        stats: torch.Tensor,
        kind: str,
        scale: float,
        eps: float,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        mala = _check_kind(kind)
        n, d, dv = q.shape[-2], q.shape[-1], v.shape[-1]
        dq, dk, dvv, dzq, dzk = (
            torch.empty(t.shape, device=t.device, dtype=t.dtype) for t in (q, k, v, zq, zk)
        )
        q3, k3, v3, zq3, zk3, do3 = (_flat(t) for t in (q, k, v, zq, zk, grad_out))
        slices = q3.shape[0]
        bt = _token_tile(n)
        chunk, chunks = chunking(slices, n, bt)
        gstats = torch.empty_like(stats)
        partial = _partial(gstats, chunks)
        wrap_triton(query_grad_kernel)[(chunks, slices)](
            q3, zq3, do3, stats.contiguous(), dq, dzq, partial, n, d, dv, chunk, chunks,
            scale, scale / n, eps, scale / n, 1.0 / n,
            BT=min(bt, FP32_TOKEN_TILE) if q.dtype == torch.float32 else bt,  # divides bt: whole chunks
            MALA=mala, FINAL=chunks == 1, **_meta(q, v),
        )  # fmt: skip
        _finish(partial, gstats, chunks, d, dv, scale / n, 1.0 / n)
        wrap_triton(key_grad_kernel)[(cdiv(n, bt), slices)](
            k3, v3, gstats, dk, dvv, dzk, n, d, dv, BM=bt, **_meta(q, v)
        )
        return dq, dk, dvv, dzq, dzk

    def _forward_fake(q, k, v, zq, zk, kind, scale, eps):
        out = q.new_empty((*q.shape[:-1], v.shape[-1]))
        return out, q.new_empty((math.prod(q.shape[:-2]), _width(q, v)), dtype=torch.float32)

    def _backward_fake(grad_out, q, k, v, zq, zk, stats, kind, scale, eps):
        return tuple(t.new_empty(t.shape) for t in (q, k, v, zq, zk))

    define_op(
        "linear_attention",
        forward=_forward,
        backward=_backward,
        forward_fake=_forward_fake,
        backward_fake=_backward_fake,
        saved=slice(1, None),  # stats: KV, m, vbar in fp32
    )

"""InfSA's public entry points (checks, dispatch) and its Triton ops, pure and linear, forward + backward."""

from __future__ import annotations

import torch

from attnzoo.kernels.common.chunks import split_tokens
from attnzoo.kernels.common.host import run_op
from attnzoo.kernels.dispatch import triton_available, triton_interpreter, use_triton
from attnzoo.kernels.infinite_attention.reference import (
    check,
    infsa_linear_reference,
    infsa_pure_reference,
    resolve_scale,
    times_rho,
)

__all__ = ["infsa_linear", "infsa_pure"]

_FLOATS = (torch.float16, torch.bfloat16, torch.float32)


def _supported(q: torch.Tensor, v: torch.Tensor, max_d: int) -> bool:
    return (
        q.dtype in _FLOATS
        and q.dtype == v.dtype
        and q.shape[-1] <= max_d
        and v.shape[-1] <= max_d
        and q.shape[-2] > 0
    )


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, *t.shape[-2:]).contiguous()


def infsa_pure(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    rho: torch.Tensor | float | None = None,
    scale: float | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Pure InfSA through the dispatch rule (Triton kernel or :func:`infsa_pure_reference`).

    ``q``, ``k``: ``[..., N, D]``; ``v``: ``[..., N, Dv]``; returns ``[..., N, Dv]``.
    """
    check(q, k, v, "infsa_pure")
    if use_triton(q, k, v, supported=_supported(q, v, 128), op="infsa_pure"):
        lead = q.shape[:-2]
        out, _ = run_op("infsa_pure", _flat(q), _flat(k), _flat(v), resolve_scale(q, scale), float(eps))
        return times_rho(out.reshape(*lead, *out.shape[-2:]), rho)
    return infsa_pure_reference(q, k, v, rho, scale, eps)


def infsa_linear(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    rho: torch.Tensor | float | None = None,
    scale: float | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Linear InfSA through the dispatch rule: the pooled vector ``[..., Dv]`` every token receives."""
    check(q, k, v, "infsa_linear")
    if use_triton(q, k, v, supported=_supported(q, v, 256), op="infsa_linear"):
        lead = q.shape[:-2]
        pooled = run_op("infsa_linear", _flat(q), _flat(k), _flat(v), resolve_scale(q, scale), float(eps))[0]
        return times_rho(pooled.reshape(*lead, pooled.shape[-1]), rho)
    return infsa_linear_reference(q, k, v, rho, scale, eps)


if triton_available():
    from torch.library import wrap_triton

    from attnzoo.kernels.common.chunks import cdiv
    from attnzoo.kernels.common.host import FP32_TOKEN_TILE, define_op, f32_like, pow2, precision, tile
    from attnzoo.kernels.infinite_attention.kernels import (
        linear_finish_kernel,
        linear_key_grad_kernel,
        linear_query_grad_kernel,
        linear_query_kernel,
        linear_value_kernel,
        pure_delta_kernel,
        pure_dkdv_kernel,
        pure_dq_kernel,
        pure_finish_kernel,
        pure_fwd_kernel,
    )

    # ------------------------------------------------------------------- pure
    # From this many tokens (and head dims <= 64) a program owns 128 queries (forward, dq) or keys
    # (dk / dv) instead of 64: half the re-reads of K, V (Q, dO) per slice, still >= 16 programs per
    # slice. Not tuned on a GPU yet.
    PURE_WIDE_FROM = 2048
    # Up to this many tokens every backward program sums <dO, O> of its slice itself (at most ~4
    # 64-token tiles of dO and O, from L2) instead of a launch computing per-tile shares first.
    PURE_INLINE_DELTA_UPTO = 256

    def _pure_meta(q: torch.Tensor, v: torch.Tensor) -> tuple[int, int, dict]:
        """``(wide, narrow, meta)``: the token tile a program owns, the tile it walks, and the rest."""
        n = q.shape[1]
        bd, bdv = pow2(q.shape[-1]), pow2(v.shape[-1])
        if q.dtype == torch.float32:  # no 128-token program tiles either: they spilled most
            narrow = wide = pow2(n, cap=FP32_TOKEN_TILE)
        else:
            narrow = tile(n)
            wide = 128 if n >= PURE_WIDE_FROM and max(bd, bdv) <= 64 else narrow
        # 16-bit inputs: the relu map (and its gradient) can exceed the fp16 range, so products
        # involving it run on fp32 operands at tf32 precision (see ``_mm`` in the kernels).
        meta = dict(BD=bd, BDV=bdv, PRECISION=precision(q), LOWP=q.dtype == torch.bfloat16)
        return wide, narrow, meta

    def _pure_forward(
        q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, eps: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        bh, n, dqk = q.shape
        dv = v.shape[-1]
        wide, narrow, meta = _pure_meta(q, v)
        tiles = cdiv(n, wide)
        u = torch.empty((bh, n, dv), **f32_like(q))
        ss = torch.empty((bh, tiles), **f32_like(q))
        grid = (tiles, bh)
        wrap_triton(pure_fwd_kernel)[grid](
            q, k, v, u, ss, n, dqk, dv, scale * scale, BM=wide, BN=narrow, **meta
        )
        out = torch.empty((bh, n, dv), device=q.device, dtype=q.dtype)
        norm = torch.empty((bh,), **f32_like(q))
        wrap_triton(pure_finish_kernel)[grid](
            u, ss, out, norm, n, tiles, dv, eps, BM=wide, BDV=meta["BDV"], BR=pow2(tiles, cap=1024)
        )
        return out, norm

    def _pure_backward(
        grad_out: torch.Tensor,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        out: torch.Tensor,
        norm: torch.Tensor,
        scale: float,
        eps: float,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        bh, n, dqk = q.shape
        dv = v.shape[-1]
        grad_out = grad_out.contiguous()
        wide, narrow, meta = _pure_meta(q, v)
        tiles = cdiv(n, wide)
        # <dO V^T, R> / (c n) = <dO, O> / n: the N x N reduction is an O(N D) one. Long slices: its
        # per-tile shares here, added in tile order by every program of the gradient kernels; short
        # ones: every program computes it, which costs less than a launch.
        inline = n <= PURE_INLINE_DELTA_UPTO
        grid = (tiles, bh)
        delta = None if inline else torch.empty((bh, tiles), **f32_like(q))
        if not inline:
            wrap_triton(pure_delta_kernel)[grid](grad_out, out, delta, n, dv, BM=wide, BDV=meta["BDV"])
        dq = torch.empty_like(q)
        dk = torch.empty_like(k)
        dvv = torch.empty_like(v)
        common = (n, tiles, dqk, dv, scale * scale, eps)
        meta.update(BR=narrow if inline else pow2(tiles, cap=1024), INLINE=inline)
        wrap_triton(pure_dkdv_kernel)[grid](
            q, k, v, grad_out, out, delta, norm, dk, dvv, *common, BM=narrow, BN=wide, **meta
        )
        wrap_triton(pure_dq_kernel)[grid](
            q, k, v, grad_out, out, delta, norm, dq, *common, BM=wide, BN=narrow, **meta
        )
        return dq, dk, dvv

    def _pure_forward_fake(q, k, v, scale, eps):
        out = q.new_empty((*q.shape[:2], v.shape[-1]))
        return out, q.new_empty(q.shape[:1], dtype=torch.float32)

    def _grads_fake(grad_out, q, k, v, *_saved_and_meta):
        return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)

    define_op(
        "infsa_pure",
        forward=_pure_forward,
        backward=_pure_backward,
        forward_fake=_pure_forward_fake,
        backward_fake=_grads_fake,
    )

    # ------------------------------------------------------------------- linear
    # Token chunks of the linear reductions: ``token`` caps the token tile; a chunk is a power of two
    # of at least ``min_chunk`` tokens (a shorter slice runs in one chunk, one launch each way: one
    # program walks it faster than two more launches take), sized so that ``slices * chunks`` nears
    # ``programs`` (a ViT-B layer at batch 1 has 12 slices for 132 SMs), and a slice has at most
    # ``max_chunks`` (every program of a second pass adds the first pass's partial rows). Under the
    # interpreter: small tiles and few programs, so the battery's longer problems span several
    # chunks, the last ragged. Not tuned on a GPU yet.
    LINEAR_GPU_TILES = {"token": 128, "min_chunk": 256, "programs": 512, "max_chunks": 64}
    LINEAR_INTERPRETER_TILES = {"token": 32, "min_chunk": 32, "programs": 8, "max_chunks": 64}

    def linear_tiles() -> dict[str, int]:
        """The chunk / tile budget in force (:data:`LINEAR_INTERPRETER_TILES` under the interpreter)."""
        return LINEAR_INTERPRETER_TILES if triton_interpreter() else LINEAR_GPU_TILES

    def linear_chunking(slices: int, n: int, token_tile: int) -> tuple[int, int]:
        """``(chunk, chunks)``: tokens per program and programs per slice, under the budget in force
        (:func:`~attnzoo.kernels.common.chunks.split_tokens`)."""
        return split_tokens(slices, n, token_tile, linear_tiles())

    def _linear_meta(q: torch.Tensor, v: torch.Tensor) -> dict:
        """Widths and the token tile (at most 8K fp32 tile numbers, so registers stay bounded)."""
        bd, bdv = pow2(q.shape[-1]), pow2(v.shape[-1])
        bn = min(linear_tiles()["token"], 8192 // max(bd, bdv), pow2(q.shape[1]))
        return dict(BN=max(16, bn), BD=bd, BDV=bdv)

    def _state_width(q: torch.Tensor, v: torch.Tensor) -> int:
        """fp32 numbers per slice of the forward's state (pooled, q_bar, E, Z) and of its partial rows
        (``sum e_i q_i s``, ``E``, ``sum r_j v_j``, ``Z``)."""
        return q.shape[-1] + v.shape[-1] + 2

    def _linear_forward(
        q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, eps: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        bh, n, dqk = q.shape
        dv = v.shape[-1]
        meta = _linear_meta(q, v)
        chunk, chunks = linear_chunking(bh, n, meta["BN"])
        width = _state_width(q, v)
        pooled = torch.empty((bh, dv), device=q.device, dtype=q.dtype)
        state = torch.empty((bh, width), **f32_like(q))
        ws = torch.empty((bh * chunks, width), **f32_like(q)) if chunks > 1 else None
        grid = (chunks, bh)
        if chunks > 1:
            wrap_triton(linear_query_kernel)[grid](
                q, ws, n, dqk, width, chunk, chunks, scale, BN=meta["BN"], BD=meta["BD"]
            )
        wrap_triton(linear_value_kernel)[grid](
            q, k, v, ws, pooled, state, n, dqk, dv, width, chunk, chunks, scale, eps,
            ONE_CHUNK=chunks == 1, **meta,
        )  # fmt: skip
        if chunks > 1:
            wrap_triton(linear_finish_kernel)[(bh,)](
                ws, pooled, state, dqk, dv, width, chunks, eps, BD=meta["BD"], BDV=meta["BDV"]
            )
        return pooled, state

    def _linear_backward(
        grad_pooled: torch.Tensor,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        state: torch.Tensor,
        scale: float,
        eps: float,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        bh, n, dqk = q.shape
        dv = v.shape[-1]
        meta = _linear_meta(q, v)
        chunk, chunks = linear_chunking(bh, n, meta["BN"])
        dq = torch.empty_like(q)
        dk = torch.empty_like(k)
        dvv = torch.empty_like(v)
        ws = torch.empty((bh * chunks, dqk), **f32_like(q)) if chunks > 1 else None
        grid = (chunks, bh)
        wrap_triton(linear_key_grad_kernel)[grid](
            q, k, v, grad_pooled.contiguous(), state, dq, dk, dvv, ws, n, dqk, dv, chunk, chunks, scale, eps,
            ONE_CHUNK=chunks == 1, **meta,
        )  # fmt: skip
        if chunks > 1:
            wrap_triton(linear_query_grad_kernel)[grid](
                q, state, ws, dq, n, dqk, dv, chunk, chunks, scale, eps, BN=meta["BN"], BD=meta["BD"]
            )
        return dq, dk, dvv

    def _linear_forward_fake(q, k, v, scale, eps):
        return q.new_empty((q.shape[0], v.shape[-1])), q.new_empty(
            (q.shape[0], _state_width(q, v)), dtype=torch.float32
        )

    define_op(
        "infsa_linear",
        forward=_linear_forward,
        backward=_linear_backward,
        forward_fake=_linear_forward_fake,
        backward_fake=_grads_fake,
        saved=slice(1, None),  # the fp32 state: pooled, q_bar, E, Z
    )

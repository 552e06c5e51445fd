"""Halo attention's public entry point (checks, dispatch) and its Triton op, forward + backward."""

from __future__ import annotations

import torch

from attnzoo.kernels.common.host import run_op
from attnzoo.kernels.dispatch import triton_available, use_triton
from attnzoo.kernels.halo_attention.reference import check_shapes, halo_attention_reference

__all__ = ["halo_attention"]


def _supported(q: torch.Tensor, v: torch.Tensor, block_q: int, win: int) -> bool:
    return (
        q.dtype in (torch.float16, torch.bfloat16, torch.float32)
        and q.shape[-1] <= 128
        and v.shape[-1] <= 128
        and block_q * block_q <= 256
        and win * win <= 1024
    )


def halo_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    qrh: torch.Tensor,
    qrw: torch.Tensor,
    block_q: int,
    block_kv: int,
    win: int,
    scale: float,
) -> torch.Tensor:
    """Halo attention through the dispatch rule (Triton kernel or :func:`halo_attention_reference`)."""
    check_shapes(q, k, v, qrh, qrw, block_q, block_kv, win)
    if use_triton(q, k, v, qrh, qrw, supported=_supported(q, v, block_q, win), op="halo_attention"):
        tensors = [t.contiguous() for t in (q, k, v, qrh, qrw)]
        out, _ = run_op("halo_attention", *tensors, block_q, block_kv, win, float(scale))
        return out
    return halo_attention_reference(q, k, v, qrh, qrw, block_q, block_kv, win, scale)


if triton_available():
    from torch.library import wrap_triton

    from attnzoo.kernels.common.chunks import cdiv
    from attnzoo.kernels.common.host import define_op, pow2, precision
    from attnzoo.kernels.halo_attention import kernels

    # Query rows of one dK/dV step: enough to fill a tensor-core tile, few enough for registers.
    _DKV_QUERY_ROWS = 64
    # fp32 (IEEE dots hold their operands in registers): keys per dK/dV program and query rows per step.
    # With a whole 8x8 key tile and 64 query rows every config spilled at halonet26t's 64-wide heads on
    # sm_90 (benchmarks/kernel_resources.py, triton 3.8: 1.5-56 KB of spill stores a thread); with 16
    # keys (a quarter tile) and 32 rows each of its shapes has spill-free configs.
    _FP32_DKV_KEYS = 16
    _FP32_DKV_QUERY_ROWS = 32

    def _key_chunk(n: int) -> int:
        """Keys per step of the window walk: the chunk (32 or 64) that pads ``n`` window keys least,
        the larger on a tie (fewer steps); a window of at most 32 keys is one chunk."""
        if n <= 32:
            return pow2(n)
        return min((64, 32), key=lambda ck: cdiv(n, ck) * ck)

    def _window_meta(q: torch.Tensor, v: torch.Tensor, block_q: int, block_kv: int, win: int) -> dict:
        return dict(
            BLOCK_Q=block_q,
            BLOCK_KV=block_kv,
            WIN=win,
            BQ=pow2(block_q * block_q),
            CK=_key_chunk(win * win),
            BD=pow2(q.shape[-1]),
            BDV=pow2(v.shape[-1]),
            PRECISION=precision(q),
        )

    def _dkv_meta(q: torch.Tensor, v: torch.Tensor, block_q: int, block_kv: int, win: int) -> dict:
        """A key tile is seen by ``nb * nb`` query blocks (``nb = cdiv(win, block_kv)``); small query
        blocks (stride 2: 16 queries) are stacked ``qpb`` per step so each dot has ~64 rows."""
        nb = cdiv(win, block_kv)
        rows = _FP32_DKV_QUERY_ROWS if q.dtype == torch.float32 else _DKV_QUERY_ROWS
        qpb = max(1, min(nb * nb, rows // (block_q * block_q)))
        keys = _FP32_DKV_KEYS if q.dtype == torch.float32 else block_kv * block_kv
        key_rows = max(1, min(block_kv, keys // block_kv))
        return dict(
            BLOCK_Q=block_q,
            BLOCK_KV=block_kv,
            WIN=win,
            NB=nb,
            QPB=qpb,
            KEY_ROWS=key_rows,
            BQT=pow2(qpb * block_q * block_q),
            BKT=pow2(key_rows * block_kv),
            BD=pow2(q.shape[-1]),
            BDV=pow2(v.shape[-1]),
            PRECISION=precision(q),
        )

    def _forward(
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        qrh: torch.Tensor,
        qrw: torch.Tensor,
        block_q: int,
        block_kv: int,
        win: int,
        scale: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        bh, hq, wq, dqk = q.shape
        _, hk, wk, dv = v.shape
        nbh, nbw = hq // block_q, wq // block_q
        out = torch.empty((bh, hq, wq, dv), device=q.device, dtype=q.dtype)
        lse = torch.empty((bh, hq, wq), device=q.device, dtype=torch.float32)
        wrap_triton(kernels.halo_fwd_kernel)[(nbh * nbw, bh)](
            q, k, v, qrh, qrw, out, lse, scale, nbw, hq, wq, hk, wk, dqk, dv, 2 * win - 1,
            **_window_meta(q, v, block_q, block_kv, win),
        )  # fmt: skip
        return out, lse

    def _backward(
        grad_out: torch.Tensor,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        qrh: torch.Tensor,
        qrw: torch.Tensor,
        out: torch.Tensor,
        lse: torch.Tensor,
        block_q: int,
        block_kv: int,
        win: int,
        scale: float,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Two launches: dQ and the relative-logit gradients per query block (storing ``delta``),
        then dK, dV per key tile (see :func:`~.kernels.halo_bwd_dkv_kernel`); no atomics, deterministic."""
        bh, hq, wq, dqk = q.shape
        _, hk, wk, dv = v.shape
        nbh, nbw = hq // block_q, wq // block_q
        ntw = cdiv(wk, block_kv)
        grad_out = grad_out.contiguous()
        dq = torch.empty_like(q)
        dk = torch.empty_like(k)
        dvv = torch.empty_like(v)
        dqrh = torch.zeros_like(qrh)  # each query writes only its window's share of the table
        dqrw = torch.zeros_like(qrw)
        delta = torch.empty_like(lse)
        wrap_triton(kernels.halo_bwd_dq_kernel)[(nbh * nbw, bh)](
            q, k, v, qrh, qrw, out, lse, grad_out, delta, dq, dqrh, dqrw,
            scale, nbw, hq, wq, hk, wk, dqk, dv, 2 * win - 1,
            BW=pow2(win), **_window_meta(q, v, block_q, block_kv, win),
        )  # fmt: skip
        meta = _dkv_meta(q, v, block_q, block_kv, win)
        parts = cdiv(block_kv, meta["KEY_ROWS"])
        wrap_triton(kernels.halo_bwd_dkv_kernel)[(cdiv(hk, block_kv) * ntw * parts, bh)](
            q, k, v, qrh, qrw, lse, grad_out, delta, dk, dvv,
            scale, nbh, nbw, ntw, hq, wq, hk, wk, dqk, dv, 2 * win - 1, **meta,
        )  # fmt: skip
        return dq, dk, dvv, dqrh, dqrw

    def _forward_fake(q, k, v, qrh, qrw, block_q, block_kv, win, scale):
        out = q.new_empty((*q.shape[:3], v.shape[-1]))
        return out, q.new_empty(q.shape[:3], dtype=torch.float32)

    def _backward_fake(grad_out, q, k, v, qrh, qrw, out, lse, block_q, block_kv, win, scale):
        return tuple(torch.empty_like(t) for t in (q, k, v, qrh, qrw))

    define_op(
        "halo_attention",
        forward=_forward,
        backward=_backward,
        forward_fake=_forward_fake,
        backward_fake=_backward_fake,
    )

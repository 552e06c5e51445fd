"""Halo attention's public entry point (checks, dispatch) and its Triton op, forward + backward."""

from __future__ import annotations

import torch

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
    if use_triton(q, k, v, qrh, qrw, supported=_supported(q, v, block_q, win)):
        tensors = [t.contiguous() for t in (q, k, v, qrh, qrw)]
        out, _ = torch.ops.attnzoo.halo_attention(*tensors, block_q, block_kv, win, float(scale))
        return out
    return halo_attention_reference(q, k, v, qrh, qrw, block_q, block_kv, win, scale)


if triton_available():
    from torch.library import wrap_triton

    from attnzoo.kernels.common.host import define_op, pow2, precision
    from attnzoo.kernels.halo_attention.kernels import halo_bwd_kernel, halo_fwd_kernel

    def _launch_meta(q: torch.Tensor, v: torch.Tensor, block_q: int, win: int) -> dict:
        return dict(
            BQ=pow2(block_q * block_q),
            BK=pow2(win * win),
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
        wrap_triton(halo_fwd_kernel)[(nbh * nbw, bh)](
            q, k, v, qrh, qrw, out, lse, scale, nbw, hq, wq, hk, wk, dqk, dv, 2 * win - 1,
            BLOCK_Q=block_q, BLOCK_KV=block_kv, WIN=win, **_launch_meta(q, v, block_q, win),
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
        bh, hq, wq, dqk = q.shape
        _, hk, wk, dv = v.shape
        nbw = wq // block_q
        dq = torch.empty_like(q)
        dk = torch.zeros(k.shape, device=k.device, dtype=torch.float32)
        dvv = torch.zeros(v.shape, device=v.device, dtype=torch.float32)
        dqrh = torch.zeros_like(qrh)
        dqrw = torch.zeros_like(qrw)
        wrap_triton(halo_bwd_kernel)[((hq // block_q) * nbw, bh)](
            q, k, v, qrh, qrw, out, lse, grad_out.contiguous(), dq, dk, dvv, dqrh, dqrw,
            scale, nbw, hq, wq, hk, wk, dqk, dv, 2 * win - 1,
            BLOCK_Q=block_q, BLOCK_KV=block_kv, WIN=win, BW=pow2(win), **_launch_meta(q, v, block_q, win),
        )  # fmt: skip
        return dq, dk.to(k.dtype), dvv.to(v.dtype), dqrh, dqrw

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

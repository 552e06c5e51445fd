"""Top-k attention's public entry point (checks, dispatch) and its Triton op, forward + backward."""

from __future__ import annotations

import torch

from attnzoo.kernels.common.host import run_op
from attnzoo.kernels.dispatch import triton_available, use_triton
from attnzoo.kernels.topk_attention.reference import check_inputs, gathered_attention

__all__ = ["topk_attention"]

# Launch shape, measured on an H200 (bf16, B x 6 heads x head dim 64; N = 197 / 577 / 1025 with
# K = 50 / 145 / 257; rows per program 1 / 2 / 4 / 8 x 1 / 2 / 4 / 8 warps): the smallest programs win,
# since every row gathers its own keys and there is no tile reuse to feed more warps (4 warps: ~1.4-1.9x
# slower; 8 rows per program: up to 10x slower with 1 warp). One query row per forward / dQ program;
# the warps are tuned per shape over common.tuning.GATHER_WARPS_STAGES, which starts at one warp.
ROWS_PER_PROGRAM = 1


def _supported(q: torch.Tensor, v: torch.Tensor) -> bool:
    return (
        q.dtype in (torch.float16, torch.bfloat16, torch.float32)
        and q.shape[-1] <= 256
        and v.shape[-1] <= 256
    )


def topk_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    idx: torch.Tensor,
    scale: float,
    *,
    check_range: bool = True,
) -> torch.Tensor:
    """Each query row attends, by one softmax, to its own ``K`` keys ``idx[b, h, m, :]``, through the
    dispatch rule (Triton kernel or :func:`topk_attention_reference`): ``[B, H, M, Dv]`` in q's dtype.

    Indices outside ``[0, N)`` raise a ValueError on both paths (one min / max, one sync; not while a
    graph is compiled or exported, where the kernel masks them instead of reading out of bounds).
    ``check_range=False`` skips that sync for indices in range by construction (a ``torch.topk`` over
    the keys): a sync per layer stalls the GPU between layers.
    """
    check_inputs(q, k, v, idx, check_range)
    if use_triton(q, k, v, idx, supported=_supported(q, v), op="topk_attention"):
        q, k, v = (t.contiguous() for t in (q, k, v))
        out, _ = run_op("topk_attention", q, k, v, idx.to(torch.int32).contiguous(), float(scale))
        return out
    return gathered_attention(q, k, v, idx, scale)


if triton_available():
    from torch.library import wrap_triton

    from attnzoo.kernels.common.chunks import cdiv
    from attnzoo.kernels.common.host import define_op, invert_index, pow2, tile
    from attnzoo.kernels.topk_attention.kernels import (
        topk_bwd_dkdv_kernel,
        topk_bwd_dq_kernel,
        topk_fwd_kernel,
    )

    def _sizes(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, idx: torch.Tensor) -> dict:
        b, h, m, d = q.shape
        return dict(M=m, N=k.shape[2], TOPK=idx.shape[-1], D=d, DV=v.shape[-1])

    def _row_meta(q: torch.Tensor, v: torch.Tensor, idx: torch.Tensor) -> dict:
        """Row-block launch constants: ``BK`` keys per step (``K`` rounded up to a power of two, at most
        64, so the ``[BM, BK, D]`` gathered tiles stay in registers; longer lists loop with an online
        softmax)."""
        bm = ROWS_PER_PROGRAM
        return dict(
            NMB=cdiv(q.shape[2], bm),
            BM=bm,
            BK=pow2(idx.shape[-1], floor=1, cap=64),
            BD=pow2(q.shape[-1], floor=1),
            BDV=pow2(v.shape[-1], floor=1),
        )

    def _forward(
        q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, idx: torch.Tensor, scale: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b, h, m, _ = q.shape
        out = torch.empty((b, h, m, v.shape[-1]), device=q.device, dtype=q.dtype)
        lse = torch.empty((b, h, m), device=q.device, dtype=torch.float32)
        meta = _row_meta(q, v, idx)
        wrap_triton(topk_fwd_kernel)[(b * h * meta["NMB"],)](
            q, k, v, idx, out, lse, scale, **_sizes(q, k, v, idx), **meta
        )
        return out, lse

    def _backward(
        grad_out: torch.Tensor,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        idx: torch.Tensor,
        out: torch.Tensor,
        lse: torch.Tensor,
        scale: float,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, h, m, _ = q.shape
        n = k.shape[2]
        grad_out = grad_out.contiguous()
        if n == 0:  # no keys (an empty result's gradient is define_op's)
            return torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
        dq, dk, dvv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        delta = (grad_out.float() * out.float()).sum(-1).contiguous()
        sizes = _sizes(q, k, v, idx)
        meta = _row_meta(q, v, idx)
        wrap_triton(topk_bwd_dq_kernel)[(b * h * meta["NMB"],)](
            q, k, v, idx, grad_out, lse, delta, dq, scale, **sizes, **meta
        )
        # For each key, the query rows that selected it.
        src, off = invert_index(idx.flatten(0, 1).flatten(1), idx.shape[-1], n)
        wrap_triton(topk_bwd_dkdv_kernel)[(b * h * n,)](
            q, k, v, src, off, grad_out, lse, delta, dk, dvv, scale, **sizes,
            BE=tile(cdiv(m * idx.shape[-1], n)), BD=meta["BD"], BDV=meta["BDV"],
        )  # fmt: skip
        return dq, dk, dvv

    def _forward_fake(q, k, v, idx, scale):
        return q.new_empty((*q.shape[:3], v.shape[-1])), q.new_empty(q.shape[:3], dtype=torch.float32)

    def _backward_fake(grad_out, q, k, v, idx, out, lse, scale):
        return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)

    define_op(
        "topk_attention",
        forward=_forward,
        backward=_backward,
        forward_fake=_forward_fake,
        backward_fake=_backward_fake,
    )

"""Fourier-KArAt's public entry point (checks, dispatch) and its Triton op, forward + backward."""

from __future__ import annotations

import torch

from attnzoo.kernels.common.host import run_op
from attnzoo.kernels.dispatch import triton_available, use_triton
from attnzoo.kernels.fourier_karat.reference import check, fourier_karat_reference, resolve_scale

__all__ = ["fourier_karat"]

_FLOATS = (torch.float16, torch.bfloat16, torch.float32)


def _supported(q: torch.Tensor, coef: torch.Tensor) -> bool:
    return (
        q.dtype in _FLOATS
        and coef.dtype in _FLOATS
        and q.shape[-1] <= 128
        and coef.shape[-1] <= 64
        and coef.shape[1] <= 33
        and q.shape[-2] > 0
    )


def fourier_karat(
    q: torch.Tensor, k: torch.Tensor, coef: torch.Tensor, scale: float | None = None
) -> torch.Tensor:
    """The Fourier-KArAt row operator through the dispatch rule (Triton kernel or the reference).

    ``q``, ``k``: ``[..., H, N, D]``; ``coef``: ``[H, 2G + 1, N, R]`` (shared by every image);
    returns ``P``, ``[..., H, N, R]`` in q's dtype (multiply by ``W^T V`` to finish the attention).
    """
    check(q, k, coef)
    if use_triton(q, k, coef, supported=_supported(q, coef), op="fourier_karat"):
        lead = q.shape[:-2]
        flat = [t.reshape(-1, *t.shape[-2:]).contiguous() for t in (q, k)]
        p = run_op("fourier_karat", *flat, coef.contiguous(), resolve_scale(q, scale))[0]
        return p.reshape(*lead, *p.shape[-2:])
    return fourier_karat_reference(q, k, coef, scale)


if triton_available():
    from torch.library import wrap_triton

    from attnzoo.kernels.common.chunks import cdiv
    from attnzoo.kernels.common.host import define_op, pow2, precision
    from attnzoo.kernels.fourier_karat.kernels import dk_dcoef_kernel, dq_kernel, fwd_kernel

    # Token tiles of at most 32: at 64 every kernel spilled on sm_90 (benchmarks/kernel_resources.py,
    # triton 3.8, karat_vit_tiny's shapes: fp32 2.6-54 KB of spill stores a thread, bf16 dQ and dK/dC
    # 0.02-2 KB), since each (query, key) tile holds scores, SiLU and two harmonics in fp32 at once.
    _TOKEN_TILE = 32

    def _meta(q: torch.Tensor, coef: torch.Tensor) -> dict:
        n = q.shape[1]
        return dict(
            G=(coef.shape[1] - 1) // 2,
            BM=pow2(n, cap=_TOKEN_TILE),
            BN=pow2(n, cap=_TOKEN_TILE),
            BD=pow2(q.shape[-1]),
            BR=pow2(coef.shape[-1]),
            PRECISION=precision(q),
        )

    def _sizes(q: torch.Tensor, coef: torch.Tensor) -> tuple[int, int, int, int]:
        """``N, D, R, H``: the integer arguments every kernel takes after its tensors."""
        return q.shape[1], q.shape[2], coef.shape[-1], coef.shape[0]

    def _forward(q: torch.Tensor, k: torch.Tensor, coef: torch.Tensor, scale: float) -> tuple[torch.Tensor]:
        bh, n, _ = q.shape
        meta = _meta(q, coef)
        p = torch.empty((bh, n, coef.shape[-1]), device=q.device, dtype=q.dtype)
        wrap_triton(fwd_kernel)[(cdiv(n, meta["BM"]), bh)](q, k, coef, p, *_sizes(q, coef), scale, **meta)
        return (p,)

    def _backward(
        grad_p: torch.Tensor, q: torch.Tensor, k: torch.Tensor, coef: torch.Tensor, scale: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        bh, n, _ = q.shape
        meta = _meta(q, coef)
        grad_p = grad_p.contiguous()
        dq = torch.empty_like(q)
        dk = torch.empty_like(k)
        dc = torch.zeros(coef.shape, device=q.device, dtype=torch.float32)
        wrap_triton(dq_kernel)[(cdiv(n, meta["BM"]), bh)](
            q, k, coef, grad_p, dq, *_sizes(q, coef), scale, **meta
        )
        # Not tuned: it adds into dC atomically, and a timed trial would add again. One stage, as
        # common.tuning.ONE_STAGE says for the tuned kernels.
        wrap_triton(dk_dcoef_kernel)[(cdiv(n, meta["BN"]), bh)](
            q, k, coef, grad_p, dk, dc, *_sizes(q, coef), scale, **meta, num_stages=1
        )
        return dq, dk, dc.to(coef.dtype)

    def _forward_fake(q, k, coef, scale):
        return (q.new_empty((*q.shape[:2], coef.shape[-1])),)

    def _backward_fake(grad_p, q, k, coef, scale):
        return torch.empty_like(q), torch.empty_like(k), torch.empty_like(coef)

    define_op(
        "fourier_karat",
        forward=_forward,
        backward=_backward,
        forward_fake=_forward_fake,
        backward_fake=_backward_fake,
        saved=slice(0, 0),  # no residuals: the backward recomputes the scores
    )

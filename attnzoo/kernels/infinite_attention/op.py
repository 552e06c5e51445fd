"""InfSA's public entry points (checks, dispatch) and its Triton ops, pure and linear, forward + backward."""

from __future__ import annotations

import torch

from attnzoo.kernels.dispatch import triton_available, use_triton
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
    if use_triton(q, k, v, supported=_supported(q, v, 128)):
        lead = q.shape[:-2]
        out, _ = torch.ops.attnzoo.infsa_pure(
            _flat(q), _flat(k), _flat(v), resolve_scale(q, scale), float(eps)
        )
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
    if use_triton(q, k, v, supported=_supported(q, v, 256)):
        lead = q.shape[:-2]
        pooled = torch.ops.attnzoo.infsa_linear(
            _flat(q), _flat(k), _flat(v), resolve_scale(q, scale), float(eps)
        )[0]
        return times_rho(pooled.reshape(*lead, pooled.shape[-1]), rho)
    return infsa_linear_reference(q, k, v, rho, scale, eps)


if triton_available():
    import triton
    from torch.library import wrap_triton

    from attnzoo.kernels.common.host import define_op, pow2, precision, tile
    from attnzoo.kernels.infinite_attention.kernels import (
        linear_bwd_kernel,
        linear_fwd_kernel,
        pure_dkdv_kernel,
        pure_dq_kernel,
        pure_finish_kernel,
        pure_fwd_kernel,
    )

    # ------------------------------------------------------------------- pure
    def _pure_meta(q: torch.Tensor, v: torch.Tensor) -> dict:
        n = q.shape[1]
        return dict(
            BM=tile(n),
            BN=tile(n),
            BD=pow2(q.shape[-1]),
            BDV=pow2(v.shape[-1]),
            # 16-bit inputs: the relu map (and its gradient) can exceed the fp16 range, so products
            # involving it run on fp32 operands at tf32 precision (see ``_mm`` in the kernels).
            PRECISION=precision(q),
            LOWP=q.dtype == torch.bfloat16,
        )

    def _pure_forward(
        q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, eps: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        bh, n, dqk = q.shape
        dv = v.shape[-1]
        meta = _pure_meta(q, v)
        u = torch.empty((bh, n, dv), device=q.device, dtype=torch.float32)
        ss = torch.empty((bh, n), device=q.device, dtype=torch.float32)
        grid = (triton.cdiv(n, meta["BM"]), bh)
        wrap_triton(pure_fwd_kernel)[grid](q, k, v, u, ss, n, dqk, dv, scale * scale, **meta)
        out = torch.empty((bh, n, dv), device=q.device, dtype=q.dtype)
        norm = torch.empty((bh,), device=q.device, dtype=torch.float32)
        wrap_triton(pure_finish_kernel)[grid](
            u, ss, out, norm, n, dv, eps, BM=meta["BM"], BDV=meta["BDV"], BR=pow2(n, cap=1024)
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
        # <dO V^T, R> / (c n) = <dO, O> / n: the N x N reduction is an O(N D) one.
        delta = (grad_out.float() * out.float()).sum(dim=(1, 2))
        beta = torch.where(norm > 0, delta / norm.clamp_min(torch.finfo(torch.float32).tiny), 0.0)
        meta = _pure_meta(q, v)
        dq = torch.empty_like(q)
        dk = torch.empty_like(k)
        dvv = torch.empty_like(v)
        wrap_triton(pure_dkdv_kernel)[(triton.cdiv(n, meta["BN"]), bh)](
            q, k, v, grad_out, beta, norm, dk, dvv, n, dqk, dv, scale * scale, eps, **meta
        )
        wrap_triton(pure_dq_kernel)[(triton.cdiv(n, meta["BM"]), bh)](
            q, k, v, grad_out, beta, norm, dq, n, dqk, dv, scale * scale, eps, **meta
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
    def _linear_meta(q: torch.Tensor, v: torch.Tensor) -> dict:
        bd, bdv = pow2(q.shape[-1]), pow2(v.shape[-1])
        return dict(BN=max(16, min(128, 8192 // max(bd, bdv))), BD=bd, BDV=bdv)

    def _linear_forward(
        q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, eps: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        bh, n, dqk = q.shape
        dv = v.shape[-1]
        pooled = torch.empty((bh, dv), device=q.device, dtype=q.dtype)
        pooled32 = torch.empty((bh, dv), device=q.device, dtype=torch.float32)
        q_bar = torch.empty((bh, dqk), device=q.device, dtype=torch.float32)
        stats = torch.empty((bh, 2), device=q.device, dtype=torch.float32)
        wrap_triton(linear_fwd_kernel)[(bh,)](
            q, k, v, pooled, pooled32, q_bar, stats, n, dqk, dv, scale, eps, **_linear_meta(q, v)
        )
        return pooled, pooled32, q_bar, stats

    def _linear_backward(
        grad_pooled: torch.Tensor,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        pooled32: torch.Tensor,
        q_bar: torch.Tensor,
        stats: torch.Tensor,
        scale: float,
        eps: float,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        bh, n, dqk = q.shape
        dv = v.shape[-1]
        dq = torch.empty_like(q)
        dk = torch.empty_like(k)
        dvv = torch.empty_like(v)
        wrap_triton(linear_bwd_kernel)[(bh,)](
            q, k, v, grad_pooled.contiguous(), pooled32, q_bar, stats, dq, dk, dvv, n, dqk, dv, scale, eps,
            **_linear_meta(q, v),
        )  # fmt: skip
        return dq, dk, dvv

    def _linear_forward_fake(q, k, v, scale, eps):
        bh, dqk, dv = q.shape[0], q.shape[-1], v.shape[-1]
        f32 = dict(dtype=torch.float32)
        return (
            q.new_empty((bh, dv)),
            q.new_empty((bh, dv), **f32),
            q.new_empty((bh, dqk), **f32),
            q.new_empty((bh, 2), **f32),
        )

    define_op(
        "infsa_linear",
        forward=_linear_forward,
        backward=_linear_backward,
        forward_fake=_linear_forward_fake,
        backward_fake=_grads_fake,
        saved=slice(1, None),  # pooled32, q_bar, stats: the fp32 residuals
    )

"""Plain-torch InfSA, pure and linear (the math of the package docstring), and the shared input rules."""

from __future__ import annotations

import torch

from attnzoo.kernels.checks import check_same_device, check_same_dtype

__all__ = [
    "check",
    "infsa_linear_reference",
    "infsa_linear_scores_reference",
    "infsa_pure_reference",
    "infsa_pure_scores_reference",
    "resolve_scale",
    "times_rho",
]


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    """fp16 / bf16 references run in fp32: the sum of squares of an N x N map overflows fp16."""
    return torch.float32 if t.dtype in (torch.float16, torch.bfloat16) else t.dtype


def check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, name: str) -> None:
    """A ValueError unless ``q``, ``k`` are ``[..., N, D]`` and ``v`` is ``[..., N, Dv]``, of one
    floating dtype, on one device; ``name`` is the op the message names."""
    if q.dim() < 2 or q.shape != k.shape or q.shape[:-1] != v.shape[:-1]:
        raise ValueError(
            f"{name} expects q, k of one shape [..., N, D] and v of shape [..., N, Dv], got "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    check_same_dtype(name, q=q, k=k, v=v)
    check_same_device(name, q=q, k=k, v=v)


def resolve_scale(q: torch.Tensor, scale: float | None) -> float:
    """``scale``, or ``head_dim ** -0.5`` when it is None."""
    return q.shape[-1] ** -0.5 if scale is None else float(scale)


def times_rho(x: torch.Tensor, rho: torch.Tensor | float | None) -> torch.Tensor:
    """``rho * x`` (``x`` itself for no rho)."""
    return x if rho is None else rho * x


def infsa_pure_scores_reference(
    q: torch.Tensor, k: torch.Tensor, scale: float | None = None, eps: float = 1e-6
) -> torch.Tensor:
    """The ``[..., N, N]`` map ``relu(q s (k s)^T) / (||.||_F + eps)`` (without rho), in fp32 for 16-bit."""
    s = resolve_scale(q, scale)
    dt = _compute_dtype(q)
    r = torch.relu((q.to(dt) * s) @ (k.to(dt) * s).transpose(-1, -2))
    n = torch.linalg.vector_norm(r.flatten(-2), dim=-1)
    return r / (n + eps)[..., None, None]


def infsa_pure_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    rho: torch.Tensor | float | None = None,
    scale: float | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Pure InfSA in plain torch (materialises the ``N x N`` map): ``rho * A V``, ``[..., N, Dv]``."""
    check(q, k, v, "infsa_pure")
    a = infsa_pure_scores_reference(q, k, scale, eps)
    return times_rho(a @ v.to(a.dtype), rho).to(v.dtype)


def infsa_linear_scores_reference(
    q: torch.Tensor, k: torch.Tensor, scale: float | None = None, eps: float = 1e-6
) -> torch.Tensor:
    """The per-key weights ``a`` (``[..., N]``, summing to ~1) of linear InfSA, without rho."""
    s = resolve_scale(q, scale)
    dt = _compute_dtype(q)
    qs, ks = q.to(dt) * s, k.to(dt) * s
    energy = torch.linalg.vector_norm(qs, dim=-1)  # [..., N]
    w = energy / (energy.sum(-1, keepdim=True) + eps)
    q_bar = (w.unsqueeze(-2) @ qs).squeeze(-2)  # [..., D]
    a = torch.relu((ks @ q_bar.unsqueeze(-1)).squeeze(-1))  # [..., N]
    return a / (a.sum(-1, keepdim=True) + eps)


def infsa_linear_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    rho: torch.Tensor | float | None = None,
    scale: float | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Linear InfSA in plain torch: the pooled vector ``rho * sum_j a_j v_j``, ``[..., Dv]``.

    Every token's output is this vector (``expand`` it to ``[..., N, Dv]`` if needed).
    """
    check(q, k, v, "infsa_linear")
    a = infsa_linear_scores_reference(q, k, scale, eps)
    pooled = (a.unsqueeze(-2) @ v.to(a.dtype)).squeeze(-2)
    return times_rho(pooled, rho).to(v.dtype)

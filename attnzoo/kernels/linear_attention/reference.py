"""Plain-torch linear attention with a per-token mean correction (the math of the package docstring)
and the input checks both paths use."""

from __future__ import annotations

import torch

from attnzoo.kernels.checks import check_same_device, check_same_dtype

__all__ = ["KINDS", "check", "linear_attention_reference", "resolve_scale"]

KINDS = ("mala", "inline")


def resolve_scale(q: torch.Tensor, scale: float | None) -> float:
    """``scale``, or ``head_dim ** -0.5`` when it is None."""
    return q.shape[-1] ** -0.5 if scale is None else float(scale)


def check(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    zq: torch.Tensor,
    zk: torch.Tensor,
    kind: str,
) -> None:
    """A ValueError naming the first inconsistent input."""
    if kind not in KINDS:
        raise ValueError(f"linear_attention kind must be one of {KINDS}, got {kind!r}")
    if q.dim() < 2 or k.shape != q.shape or v.shape[:-1] != q.shape[:-1]:
        raise ValueError(
            "linear_attention expects q, k of one shape [..., N, D] and v of shape [..., N, Dv], got "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if zq.shape != q.shape or zk.shape != q.shape:
        raise ValueError(
            f"linear_attention: zq {tuple(zq.shape)} and zk {tuple(zk.shape)} must have q's shape "
            f"{tuple(q.shape)}"
        )
    check_same_dtype("linear_attention", q=q, k=k, v=v, zq=zq, zk=zk)
    check_same_device("linear_attention", q=q, k=k, v=v, zq=zq, zk=zk)


def linear_attention_reference(
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
    """Linear attention in plain torch (16-bit inputs computed in fp32), ``[..., N, Dv]`` in v's dtype."""
    zq = q if zq is None else zq
    zk = k if zk is None else zk
    check(q, k, v, zq, zk, kind)
    s = resolve_scale(q, scale)
    n = q.shape[-2]
    dt = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
    q, k, v, zq, zk = (t.to(dt) for t in (q, k, v, zq, zk))
    z = (zq @ zk.mean(-2, keepdim=True).transpose(-1, -2)) * s  # [..., N, 1]
    v_mean = v.mean(-2, keepdim=True)
    qkv = q @ (k.transpose(-1, -2) @ v) * (s / max(n, 1))  # n = 0: empty, every input keeps a gradient
    if kind == "mala":
        out = qkv * (1 + 1 / (z + eps)) - z * v_mean
    else:
        out = qkv + (1 - z) * v_mean
    return out.to(v.dtype)

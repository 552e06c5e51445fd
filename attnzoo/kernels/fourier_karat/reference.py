"""Plain-torch Fourier-KArAt row operator (the math of the package docstring) and its input rules.

Materialises the ``[..., N, N, 2G + 1]`` activated tensor: the naive path the kernel is measured
against, and what runs on CPU, in export and under graph capture.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from attnzoo.kernels.checks import check_same_device, check_same_dtype

__all__ = ["check", "fourier_basis", "fourier_karat_reference", "resolve_scale"]


def check(q: torch.Tensor, k: torch.Tensor, coef: torch.Tensor) -> None:
    """A ValueError unless ``q``, ``k`` are ``[..., H, N, D]`` of one floating dtype and ``coef`` is
    ``[H, 2G + 1, N, R]``, all on one device. ``coef`` may have its own floating dtype: the layer keeps
    fp32 coefficients beside autocast's 16-bit ``q``, ``k``."""
    ok = (
        q.dim() >= 3
        and q.shape == k.shape
        and coef.dim() == 4
        and coef.shape[0] == q.shape[-3]
        and coef.shape[2] == q.shape[-2]
        and coef.shape[1] % 2 == 1
    )
    if not ok:
        raise ValueError(
            "fourier_karat expects q, k of one shape [..., H, N, D] and coef of shape [H, 2G + 1, N, R], "
            f"got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(coef.shape)}"
        )
    check_same_dtype("fourier_karat", q=q, k=k)
    if not coef.is_floating_point():
        raise ValueError(f"fourier_karat: coef must be a floating tensor, got {coef.dtype}")
    check_same_device("fourier_karat", q=q, k=k, coef=coef)


def resolve_scale(q: torch.Tensor, scale: float | None) -> float:
    """``scale``, or ``head_dim ** -0.5`` when it is None."""
    return q.shape[-1] ** -0.5 if scale is None else float(scale)


def fourier_basis(s: torch.Tensor, grid: int) -> torch.Tensor:
    """``[..., 2G + 1]``: ``silu(s)``, then ``cos(m s)``, ``sin(m s)`` for ``m = 1 .. grid``."""
    m = torch.arange(1, grid + 1, device=s.device, dtype=s.dtype)
    ms = s.unsqueeze(-1) * m  # [..., G]
    harmonics = torch.stack((torch.cos(ms), torch.sin(ms)), dim=-1).flatten(-2)  # cos1, sin1, cos2, ...
    return torch.cat((F.silu(s).unsqueeze(-1), harmonics), dim=-1)


def fourier_karat_reference(
    q: torch.Tensor, k: torch.Tensor, coef: torch.Tensor, scale: float | None = None
) -> torch.Tensor:
    """``P = Phi(q k^T scale)``, ``[..., H, N, R]`` (16-bit inputs run in fp32, returned in q's dtype)."""
    check(q, k, coef)
    dt = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
    s = (q.to(dt) @ k.to(dt).transpose(-1, -2)) * resolve_scale(q, scale)  # [..., H, N, N]
    basis = fourier_basis(s, (coef.shape[1] - 1) // 2)  # [..., H, N(query), N(key), J]
    p = torch.einsum("...hkqj,hjqr->...hkr", basis, coef.to(dt))
    return p.to(q.dtype)

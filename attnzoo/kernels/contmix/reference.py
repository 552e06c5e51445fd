"""Plain-torch ContMix aggregation (the math of the package docstring) and the input checks both
paths use."""

from __future__ import annotations

import torch

from attnzoo.kernels.checks import check_same_device, check_same_dtype

__all__ = ["check_shapes", "contmix_reference", "kernel_size_of", "window_starts"]


def kernel_size_of(rpb: torch.Tensor) -> int:
    """The window size ``K`` of a ``[G, 2K - 1, 2K - 1]`` relative-position-bias table."""
    return (rpb.shape[-1] + 1) // 2


def check_shapes(
    q: torch.Tensor, proj: torch.Tensor, proj_bias: torch.Tensor, rpb: torch.Tensor, v: torch.Tensor
) -> int:
    """A ValueError naming the first inconsistent input; returns the window size ``K``."""
    if q.dim() != 5 or v.dim() != 5:
        raise ValueError(
            f"contmix expects q [B, G, H, W, C] and v [B, G, H, W, Cv], got ranks {q.dim()}, {v.dim()}"
        )
    if rpb.dim() != 3 or rpb.shape[1] != rpb.shape[2] or rpb.shape[1] % 2 == 0:
        raise ValueError(f"contmix: rpb must be [G, 2K - 1, 2K - 1] (odd, square), got {tuple(rpb.shape)}")
    k = kernel_size_of(rpb)
    b, g, h, w, c = q.shape
    if v.shape[:4] != q.shape[:4]:
        raise ValueError(f"contmix: v {tuple(v.shape)} does not match q {tuple(q.shape)} on [B, G, H, W]")
    if tuple(proj.shape) != (b, g, c, k * k):
        raise ValueError(
            f"contmix: proj must be [B, G, C, K * K] = {(b, g, c, k * k)}, got {tuple(proj.shape)}"
        )
    if tuple(proj_bias.shape) != (k * k,):
        raise ValueError(f"contmix: proj_bias must be [K * K] = [{k * k}], got {tuple(proj_bias.shape)}")
    if rpb.shape[0] != g:
        raise ValueError(f"contmix: rpb has {rpb.shape[0]} groups, q has {g}")
    check_same_dtype("contmix", q=q, proj=proj, proj_bias=proj_bias, rpb=rpb, v=v)
    check_same_device("contmix", q=q, proj=proj, proj_bias=proj_bias, rpb=rpb, v=v)
    if h < k or w < k:
        raise ValueError(
            f"contmix needs a map at least as large as its {k}x{k} window, got {h}x{w} "
            "(the ContMix layer resizes smaller maps up first, as the official model does)"
        )
    return k


def window_starts(size: int, k: int, device: torch.device | None = None) -> torch.Tensor:
    """First row (column) of each position's window: centred, shifted inward at the borders
    (NATTEN's rule), so every window lies inside the map; ``[size]`` int64."""
    return (torch.arange(size, device=device) - k // 2).clamp(0, size - k)


def contmix_reference(
    q: torch.Tensor, proj: torch.Tensor, proj_bias: torch.Tensor, rpb: torch.Tensor, v: torch.Tensor
) -> torch.Tensor:
    """ContMix aggregation with explicit ``[B, G, H, W, K * K]`` weights and gathered windows of ``v``
    (exact in float64, differentiable by autograd); 16-bit inputs compute in fp32."""
    k = check_shapes(q, proj, proj_bias, rpb, v)
    b, g, h, w, _ = q.shape
    dt = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
    offsets = torch.arange(k, device=q.device)
    rows = window_starts(h, k, q.device)[:, None] + offsets  # [H, K] window rows of each row
    cols = window_starts(w, k, q.device)[:, None] + offsets  # [W, K]
    rel_rows = rows - torch.arange(h, device=q.device)[:, None] + k - 1  # rpb row of each neighbour
    rel_cols = cols - torch.arange(w, device=q.device)[:, None] + k - 1
    bias = rpb.to(dt)[:, rel_rows[:, None, :, None], rel_cols[None, :, None, :]]  # [G, H, W, K, K]
    logits = torch.einsum("bghwc,bgck->bghwk", q.to(dt), proj.to(dt)) + proj_bias.to(dt)
    attn = torch.softmax(logits + bias.reshape(g, h, w, k * k), dim=-1)
    # Windows by two separable index_selects, laid out [B, G, H, W, K (col), K (row), Cv] so that
    # the weighted sum is one batched matmul without another copy of them.
    windows = v.to(dt).index_select(2, rows.flatten()).unflatten(2, (h, k)).transpose(3, 4)
    windows = windows.index_select(3, cols.flatten()).unflatten(3, (w, k))
    weights = attn.reshape(b, g, h, w, k, k).transpose(-1, -2).reshape(b, g, h, w, 1, k * k)
    out = (weights @ windows.flatten(4, 5)).squeeze(-2)
    return out.to(q.dtype)

"""Region routing and plain-torch routed attention (see the package docstring for the geometry)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from attnzoo.kernels.checks import check_index_range, check_same_device, check_same_dtype

__all__ = [
    "bilevel_routing",
    "bilevel_routing_attention_reference",
    "check_inputs",
    "region_grid",
    "routed_attention",
]

OP = "bilevel_routing_attention"


def region_grid(h: int, w: int, n_win: int) -> tuple[int, int, int, int]:
    """``(region_h, region_w, regions_y, regions_x)`` for an ``h x w`` map cut into at most
    ``n_win x n_win`` regions of ``ceil(h / n_win) x ceil(w / n_win)`` tokens.

    When ``n_win`` divides the sides this is BiFormer's exact grid. Otherwise regions keep the size
    the official ``auto_pad`` gives them, and regions that would hold only padding are dropped.
    """
    rh, rw = math.ceil(h / n_win), math.ceil(w / n_win)
    return rh, rw, math.ceil(h / rh), math.ceil(w / rw)


def _grid(h: int, w: int, region_size: tuple[int, int]) -> tuple[int, int, int, int]:
    rh, rw = region_size
    if rh < 1 or rw < 1:
        raise ValueError(f"region size must be positive, got {region_size}")
    return rh, rw, math.ceil(h / rh), math.ceil(w / rw)


def _to_regions(x: torch.Tensor, rh: int, rw: int, nrh: int, nrw: int) -> torch.Tensor:
    """``[..., H, W, C]`` -> ``[..., R, T, C]``, zero-padded bottom / right to whole regions."""
    *lead, h, w, c = x.shape
    x = F.pad(x, (0, 0, 0, nrw * rw - w, 0, nrh * rh - h))
    x = x.reshape(*lead, nrh, rh, nrw, rw, c).transpose(-4, -3)
    return x.reshape(*lead, nrh * nrw, rh * rw, c)


def _from_regions(x: torch.Tensor, h: int, w: int, rh: int, rw: int, nrh: int, nrw: int) -> torch.Tensor:
    """Inverse of :func:`_to_regions` (crops the padding)."""
    *lead, _, _, c = x.shape
    x = x.reshape(*lead, nrh, nrw, rh, rw, c).transpose(-4, -3)
    return x.reshape(*lead, nrh * rh, nrw * rw, c)[..., :h, :w, :]


def _valid_tokens(h: int, w: int, rh: int, rw: int, nrh: int, nrw: int, device) -> torch.Tensor:
    """``[R, T]`` bool: which region slots hold a real token (not bottom / right padding)."""
    ys = torch.arange(nrh * rh, device=device) < h
    xs = torch.arange(nrw * rw, device=device) < w
    mask = (ys[:, None] & xs[None, :])[..., None]
    return _to_regions(mask, rh, rw, nrh, nrw)[..., 0]


def bilevel_routing(
    q: torch.Tensor, k: torch.Tensor, region_size: tuple[int, int], topk: int, scale: float
) -> torch.Tensor:
    """Top-k region routing: ``[B, R, min(topk, R)]`` int64 region indices for ``q``, ``k`` of shape
    ``[B, H, W, C]`` (all heads' channels). Padding is left out of the region means; no gradient."""
    if q.dim() != 4 or k.shape != q.shape:
        raise ValueError(f"routing expects q and k of equal shape [B, H, W, C], got {q.shape} / {k.shape}")
    if topk < 1:
        raise ValueError(f"topk must be >= 1, got {topk}")
    _, h, w, _ = q.shape
    rh, rw, nrh, nrw = _grid(h, w, region_size)
    with torch.no_grad():
        q, k = q.detach(), k.detach()
        if nrh * rh == h and nrw * rw == w:
            q_r = _to_regions(q, rh, rw, nrh, nrw).mean(-2)
            k_r = _to_regions(k, rh, rw, nrh, nrw).mean(-2)
        else:
            count = _valid_tokens(h, w, rh, rw, nrh, nrw, q.device).sum(-1, keepdim=True).to(q.dtype)
            q_r = _to_regions(q, rh, rw, nrh, nrw).sum(-2) / count
            k_r = _to_regions(k, rh, rw, nrh, nrw).sum(-2) / count
        logits = (q_r * scale) @ k_r.transpose(-1, -2)  # [B, R, R]
        return torch.topk(logits, k=min(topk, nrh * nrw), dim=-1).indices


def check_inputs(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    idx: torch.Tensor,
    region_size: tuple[int, int],
    check_range: bool = True,
) -> tuple[int, int, int, int]:
    """The region grid ``(rh, rw, nrh, nrw)``; a ValueError naming the first bad input: ranks, shapes,
    dtypes, devices (no sync), then, with ``check_range``, the routing index's range (one min / max,
    see :func:`~attnzoo.kernels.checks.check_index_range`). Both paths run it once, before dispatch."""
    if q.dim() != 5 or k.dim() != 5 or v.dim() != 5:
        raise ValueError(
            f"{OP} expects q, k, v of shape [B, heads, H, W, D], got ranks {q.dim()}, {k.dim()}, {v.dim()}"
        )
    if k.shape != q.shape:
        raise ValueError(f"{OP}: q and k shapes differ: {tuple(q.shape)} vs {tuple(k.shape)}")
    if v.shape[:4] != q.shape[:4]:
        raise ValueError(f"{OP}: v {tuple(v.shape)} does not match q {tuple(q.shape)} on [B, heads, H, W]")
    b, _, h, w, _ = q.shape
    grid = _grid(h, w, region_size)
    nr = grid[2] * grid[3]
    if idx.dim() != 3 or idx.shape[0] != b or idx.shape[1] != nr or not 1 <= idx.shape[2] <= nr:
        raise ValueError(
            f"{OP}: routing index must have shape [{b}, {nr}, k] with 1 <= k <= {nr}, got {tuple(idx.shape)}"
        )
    if idx.is_floating_point() or idx.dtype == torch.bool:
        raise ValueError(f"{OP}: routing index must be an integer tensor, got {idx.dtype}")
    check_same_dtype(OP, q=q, k=k, v=v)
    check_same_device(OP, q=q, k=k, v=v, idx=idx)
    if check_range:
        check_index_range(OP, "routing index", idx, nr)
    return grid


def bilevel_routing_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    idx: torch.Tensor,
    region_size: tuple[int, int],
    scale: float,
) -> torch.Tensor:
    """Plain-torch routed attention with an explicit gathered K / V copy (the official formulation)."""
    return routed_attention(q, k, v, idx, check_inputs(q, k, v, idx, region_size), scale)


def routed_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    idx: torch.Tensor,
    grid: tuple[int, int, int, int],
    scale: float,
) -> torch.Tensor:
    """The reference's math on inputs :func:`check_inputs` accepted, ``grid`` being what it returned
    (the public op checks once)."""
    rh, rw, nrh, nrw = grid
    b, m, h, w, _ = q.shape
    q_r, k_r, v_r = (_to_regions(t, rh, rw, nrh, nrw) for t in (q, k, v))  # [B, M, R, T, D]
    idx = idx.long()
    batch = torch.arange(b, device=q.device)[:, None, None]
    k_sel = k_r.transpose(1, 2)[batch, idx]  # [B, R, K, M, T, D]
    v_sel = v_r.transpose(1, 2)[batch, idx]
    nr, topk, t = idx.shape[1], idx.shape[2], rh * rw
    k_sel = k_sel.permute(0, 3, 1, 2, 4, 5).flatten(3, 4)  # [B, M, R, K * T, D]; flatten sizes an empty batch
    v_sel = v_sel.permute(0, 3, 1, 2, 4, 5).flatten(3, 4)
    valid = _valid_tokens(h, w, rh, rw, nrh, nrw, q.device)[idx].reshape(b, 1, nr, 1, topk * t)
    attn = (q_r * scale) @ k_sel.transpose(-1, -2)  # [B, M, R, T, K * T]
    attn = attn.masked_fill(~valid, float("-inf")).softmax(dim=-1)
    return _from_regions(attn @ v_sel, h, w, rh, rw, nrh, nrw)

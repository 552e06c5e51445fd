"""BiFormer's attention layers: bi-level routing attention and global attention, each with a LePE term.

Both take and return channels-last maps ``(B, H, W, C)`` of any size. Parameter names follow the
official ``ops/bra_legacy.py`` and ``models/_common.py`` modules so official checkpoints load as is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_function
from torch import nn

from attnzoo.kernels.bilevel_routing import bilevel_routing, bilevel_routing_attention, region_grid
from attnzoo.layers.padding import pad_to_multiple

__all__ = ["PAD_MODES", "BiLevelRoutingAttention", "GlobalAttentionLePE", "QKVLinear"]

# How routed attention treats a map whose sides are not multiples of n_win (BiLevelRoutingAttention).
PAD_MODES = ("mask", "zeros")

# The ops check shapes and pick a kernel per call: torch.fx keeps each as one call, the layer around
# them (projections, head split, LePE) is traced.
register_notrace_function(bilevel_routing)
register_notrace_function(bilevel_routing_attention)


class QKVLinear(nn.Module):
    """One linear producing ``[q | k | v]`` with widths ``(qk_dim, qk_dim, dim)``."""

    def __init__(self, dim: int, qk_dim: int, bias: bool = True, device=None, dtype=None) -> None:
        super().__init__()
        self.dim = dim
        self.qk_dim = qk_dim
        self.qkv = nn.Linear(dim, 2 * qk_dim + dim, bias=bias, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.qkv(x).split([self.qk_dim, self.qk_dim, self.dim], dim=-1)


def _dwconv(dim: int, kernel_size: int, device=None, dtype=None) -> nn.Conv2d | None:
    if kernel_size <= 0:
        return None
    return nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim, device=device, dtype=dtype)


def _apply_nhwc(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    return conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class BiLevelRoutingAttention(nn.Module):
    """Bi-level routing attention (Zhu et al., CVPR 2023) with BiFormer's released settings.

    The map is cut into ``n_win x n_win`` regions; each query region attends to the tokens of its
    ``topk`` most affine regions (region query / key = mean of the region's q / k, full channel width,
    detached). ``scale`` defaults to ``qk_dim ** -0.5`` (the whole width, as the official code does)
    for both routing and token attention. LePE = depthwise ``side_dwconv`` conv on v, added before
    ``wo``. Heads split the channels outermost. ``kv_downsample_mode='identity'`` only (what every
    released BiFormer uses).

    Sizes not divisible by ``n_win``, by ``pad_mode``:

    * ``'mask'`` (default): regions are ``ceil(H / n_win) x ceil(W / n_win)`` tokens, the map is
      conceptually zero-padded bottom / right to whole regions, and the padding is neither part of
      region means nor a key (masked out of the softmax); regions holding only padding are dropped and
      ``topk`` is capped at the number of regions. LePE runs on the unpadded map.
    * ``'zeros'``: the official dense code's ``auto_pad``: the input is zero-padded bottom / right to a
      multiple of ``n_win`` *before* the qkv projection, so padded tokens (q / k / v = the projection
      biases) count in region means, routing, attention and LePE like any other; cropped after ``wo``.

    Divisible sizes are exactly the official computation in both modes.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        n_win: int = 7,
        qk_dim: int | None = None,
        qk_scale: float | None = None,
        topk: int = 4,
        side_dwconv: int = 5,
        qkv_bias: bool = True,
        pad_mode: str = "mask",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        if pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
        self.dim = dim
        self.qk_dim = qk_dim or dim
        if self.qk_dim % num_heads or dim % num_heads:
            raise ValueError(f"qk_dim {self.qk_dim} and dim {dim} must be divisible by num_heads {num_heads}")
        if topk < 1:
            raise ValueError(f"topk must be >= 1, got {topk}")
        self.num_heads = num_heads
        self.n_win = n_win
        self.topk = topk
        self.pad_mode = pad_mode
        self.scale = qk_scale or self.qk_dim**-0.5
        self.lepe = _dwconv(dim, side_dwconv, **dd)
        self.qkv = QKVLinear(dim, self.qk_dim, bias=qkv_bias, **dd)
        self.wo = nn.Linear(dim, dim, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad_mode == "zeros":
            h, w = x.shape[1:3]
            return self._attend(pad_to_multiple(x, self.n_win, channels_last=True))[:, :h, :w]
        return self._attend(x)

    def _attend(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        rh, rw, _, _ = region_grid(h, w, self.n_win)
        q, k, v = self.qkv(x)
        idx = bilevel_routing(q, k, (rh, rw), self.topk, self.scale)
        m = self.num_heads

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.unflatten(-1, (m, -1)).permute(0, 3, 1, 2, 4)  # sizes the heads of an empty batch too

        # idx is a topk over the regions: in range by construction, so no range check (and no sync).
        out = bilevel_routing_attention(
            heads(q), heads(k), heads(v), idx, (rh, rw), self.scale, check_range=False
        )
        out = out.permute(0, 2, 3, 1, 4).reshape(b, h, w, self.dim)
        if self.lepe is not None:
            out = out + _apply_nhwc(self.lepe, v)
        return self.wo(out)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, num_heads={self.num_heads}, n_win={self.n_win}, topk={self.topk}, "
            f"pad_mode={self.pad_mode!r}"
        )


class GlobalAttentionLePE(nn.Module):
    """Global multi-head attention plus LePE, BiFormer's last-stage mixer (official ``AttentionLePE``).

    ``scale = (dim / num_heads) ** -0.5``; LePE is a depthwise conv of the layer's *input* (not of v),
    added before ``proj``. Runs through ``F.scaled_dot_product_attention``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = False,
        qk_scale: float | None = None,
        side_dwconv: int = 5,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias, **dd)
        self.proj = nn.Linear(dim, dim, **dd)
        self.lepe = _dwconv(dim, side_dwconv, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], scale=self.scale)
        out = out.transpose(1, 2).reshape(b, h, w, c)
        if self.lepe is not None:
            out = out + _apply_nhwc(self.lepe, x)
        return self.proj(out)

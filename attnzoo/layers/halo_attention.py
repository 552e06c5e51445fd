"""HaloNet's blocked local self-attention as a drop-in for timm's ``HaloAttn`` (same keys, same math).

Unlike timm's layer, any H and W work: the query grid is zero-padded up to the block size and the
output cropped back, and positions outside the image act as the zero keys / values of the halo
border, so inputs that are already multiples of the block size give exactly timm's result.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import make_divisible, register_notrace_function, trunc_normal_
from torch import nn

from attnzoo.kernels import halo_attention

__all__ = ["HaloAttention", "RelPosTables"]

# The op checks shapes and picks a kernel per call: torch.fx keeps it as one call, the layer around it
# (projections, padding, relative logits, crop) is traced.
register_notrace_function(halo_attention)


@register_notrace_function  # branches on the shape (torch.fx wraps only public names)
def check_channels(x: torch.Tensor, dim: int) -> None:
    """Name a wrong channel count here rather than let the 1x1 projections fail on it."""
    if x.shape[1] != dim:
        raise ValueError(f"HaloAttention expects {dim} input channels, got {x.shape[1]}")


class RelPosTables(nn.Module):
    """Learned relative-position tables, one row per offset, for window height and width."""

    def __init__(self, win_size: int, dim_head: int, device=None, dtype=None) -> None:
        super().__init__()
        self.height_rel = nn.Parameter(torch.empty(2 * win_size - 1, dim_head, device=device, dtype=dtype))
        self.width_rel = nn.Parameter(torch.empty(2 * win_size - 1, dim_head, device=device, dtype=dtype))


class HaloAttention(nn.Module):
    """Halo attention (Vaswani et al. 2021, "Scaling Local Self-Attention ...").

    Arguments follow timm's ``HaloAttn`` so ByobNet configs take it unchanged: ``dim_head`` sets the
    q/k head width (else ``make_divisible(dim_out * qk_ratio, 8) // num_heads``); v heads are
    ``dim_out // num_heads``; ``stride=2`` strides the queries (or average-pools the output when the
    block size is odd or ``avg_down``).
    """

    def __init__(
        self,
        dim: int,
        dim_out: int | None = None,
        feat_size: tuple[int, int] | None = None,
        stride: int = 1,
        num_heads: int = 8,
        dim_head: int | None = None,
        block_size: int = 8,
        halo_size: int = 3,
        qk_ratio: float = 1.0,
        qkv_bias: bool = False,
        avg_down: bool = False,
        scale_pos_embed: bool = False,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        del feat_size  # accepted for ByobNet compatibility; the layer works at any size
        dim_out = dim_out or dim
        if dim_out % num_heads:
            raise ValueError(f"dim_out={dim_out} is not divisible by num_heads={num_heads}")
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        self.dim = dim
        self.num_heads = num_heads
        self.dim_head_qk = dim_head or make_divisible(dim_out * qk_ratio, divisor=8) // num_heads
        self.dim_head_v = dim_out // num_heads
        self.scale = self.dim_head_qk**-0.5
        self.scale_pos_embed = scale_pos_embed
        self.block_size = block_size
        self.halo_size = halo_size
        self.win_size = block_size + 2 * halo_size
        use_avg_pool = stride > 1 and (avg_down or block_size % stride != 0)
        self.block_stride = stride if stride > 1 and not use_avg_pool else 1
        self.block_size_ds = block_size // self.block_stride

        dd = dict(device=device, dtype=dtype)
        qk_out, v_out = num_heads * self.dim_head_qk, num_heads * self.dim_head_v
        self.q = nn.Conv2d(dim, qk_out, 1, stride=self.block_stride, bias=qkv_bias, **dd)
        self.kv = nn.Conv2d(dim, qk_out + v_out, 1, bias=qkv_bias, **dd)
        self.pos_embed = RelPosTables(self.win_size, self.dim_head_qk, **dd)
        self.pool = nn.AvgPool2d(2, 2, ceil_mode=True) if use_avg_pool else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        std = self.q.weight.shape[1] ** -0.5
        trunc_normal_(self.q.weight, std=std)
        trunc_normal_(self.kv.weight, std=std)
        trunc_normal_(self.pos_embed.height_rel, std=self.scale)
        trunc_normal_(self.pos_embed.width_rel, std=self.scale)

    def _heads(self, x: torch.Tensor, dims: list[int]) -> list[torch.Tensor]:
        """[B, heads * sum(dims), H, W] -> per part [B * heads, H, W, dim] (channels head-major)."""
        b, _, h, w = x.shape
        x = x.reshape(b, self.num_heads, sum(dims), h, w).permute(0, 1, 3, 4, 2)
        parts = torch.split(x, dims, dim=-1)  # indexed, not iterated: torch.fx cannot iterate it
        return [parts[i].reshape(b * self.num_heads, h, w, dims[i]) for i in range(len(dims))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_channels(x, self.dim)
        b, _, h, w = x.shape
        bs, halo, s = self.block_size, self.halo_size, self.block_stride
        nbh, nbw = -(-h // bs), -(-w // bs)
        out_h, out_w = -(-h // s), -(-w // s)
        bq = self.block_size_ds

        q = self.q(x)
        q = F.pad(q, (0, nbw * bq - q.shape[-1], 0, nbh * bq - q.shape[-2]))
        kv = self.kv(x)
        kv = F.pad(kv, (halo, halo + nbw * bs - w, halo, halo + nbh * bs - h))
        (q,) = self._heads(q, [self.dim_head_qk])
        k, v = self._heads(kv, [self.dim_head_qk, self.dim_head_v])

        rel_scale = self.scale if self.scale_pos_embed else 1.0
        qrh = (q @ self.pos_embed.height_rel.transpose(0, 1)) * rel_scale
        qrw = (q @ self.pos_embed.width_rel.transpose(0, 1)) * rel_scale
        out = halo_attention(q, k, v, qrh, qrw, bq, bs, self.win_size, self.scale)

        out = out[:, :out_h, :out_w]
        out = out.reshape(b, self.num_heads, out_h, out_w, self.dim_head_v).permute(0, 1, 4, 2, 3)
        return self.pool(out.reshape(b, self.num_heads * self.dim_head_v, out_h, out_w))

"""ConViT's attention layers: gated positional self-attention (GPSA) and plain multi-head self-attention.

Parameter names follow timm's ``convit`` (``qk``, ``v``, ``proj``, ``pos_proj``, ``gating_param``,
``qkv``), so timm's and the official checkpoints load unchanged. GPSA works on any rectangular patch
grid: the relative offsets are built for ``(grid_h, grid_w)`` (timm assumes a square grid of side
``sqrt(N)``) and kept in a per-module cache that never enters the state dict. Both layers take the
keyword arguments timm's ``Block`` gives an attention layer (so it builds them), and both take
``grid_size`` in ``forward``.
"""

from __future__ import annotations

import math

import torch
from timm.layers import Attention, register_notrace_function
from torch import nn

__all__ = ["GatedPositionalSelfAttention", "MultiHeadSelfAttention", "relative_offsets"]

_CACHE_LIMIT = 8


def relative_offsets(
    grid_size: tuple[int, int], device: torch.device | None = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """``(1, N, N, 3)`` table of (dx, dy, dx^2 + dy^2) from query patch n to key patch m, N = gh * gw.

    Patches are numbered row-major (n = row * gw + col); dx = col_m - col_n, dy = row_m - row_n.
    """
    gh, gw = grid_size
    rows = torch.arange(gh, dtype=torch.float32).repeat_interleave(gw)
    cols = torch.arange(gw, dtype=torch.float32).repeat(gh)
    dx = cols[None, :] - cols[:, None]
    dy = rows[None, :] - rows[:, None]
    table = torch.stack((dx, dy, dx * dx + dy * dy), dim=-1).unsqueeze(0)
    return table.to(device=device, dtype=dtype)


# torch.fx: the check branches on the traced shape, so a trace records it as one call (autowrap needs a
# public name).
@register_notrace_function
def check_grid(num_tokens: int, grid_size: tuple[int, int] | None) -> tuple[int, int]:
    """``grid_size`` as two ints, checked to hold ``num_tokens`` patches (default: a square grid)."""
    if grid_size is None:
        side = math.isqrt(num_tokens)
        if side * side != num_tokens:
            raise ValueError(f"{num_tokens} tokens form no square grid; pass grid_size=(h, w)")
        return side, side
    gh, gw = int(grid_size[0]), int(grid_size[1])
    if gh * gw != num_tokens:
        raise ValueError(f"grid_size {gh}x{gw} does not hold {num_tokens} tokens")
    return gh, gw


class GatedPositionalSelfAttention(nn.Module):
    """Gated positional self-attention (d'Ascoli et al. 2021, ConViT).

    Each head mixes a content softmax ``softmax(q k^T / sqrt(d))`` with a positional softmax over a
    learned linear function (``pos_proj``) of the relative offsets (dx, dy, dx^2 + dy^2), weighted by
    ``sigmoid(gating_param)`` per head, then renormalised. ``local_init`` sets the positional part to
    attend to a ``sqrt(heads) x sqrt(heads)`` neighbourhood (one offset per head), like a convolution.
    Input ``(B, N, C)`` with N = grid_h * grid_w patch tokens (no class token).

    ``qk_norm``, ``scale_norm``, ``proj_bias`` and ``norm_layer`` are timm ``Attention``'s arguments, taken
    so that timm's ``Block`` can build the layer; GPSA has neither norm.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = False,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        locality_strength: float = 1.0,
        qk_norm: bool = False,
        scale_norm: bool = False,
        proj_bias: bool = True,
        norm_layer: type[nn.Module] | None = None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not a multiple of num_heads {num_heads}")
        if qk_norm or scale_norm:
            raise ValueError("GatedPositionalSelfAttention has no qk_norm / scale_norm")
        dd = {"device": device, "dtype": dtype}
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.locality_strength = locality_strength
        self.qk = nn.Linear(dim, 2 * dim, bias=qkv_bias, **dd)
        self.v = nn.Linear(dim, dim, bias=qkv_bias, **dd)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim, bias=proj_bias, **dd)
        self.proj_drop = nn.Dropout(proj_drop)
        self.pos_proj = nn.Linear(3, num_heads, **dd)
        self.gating_param = nn.Parameter(torch.ones(num_heads, **dd))
        # (gh, gw, device, dtype) -> relative offsets; a plain attribute, so never in the state dict.
        self._offsets: dict[tuple, torch.Tensor] = {}

    @torch.no_grad()
    def local_init(self) -> None:
        """Convolution-like start: v is the identity and head p peaks at one offset of a k x k kernel.

        The positional logit ``2 dx_p dx + 2 dy_p dy - (dx^2 + dy^2)`` is largest at (dx_p, dy_p), with
        dx_p = p // k - c, dy_p = p % k - c, k = isqrt(heads), c = (k - 1) / 2; everything is then
        scaled by ``locality_strength`` (heads beyond k * k keep their random weights, scaled too).
        """
        self.v.weight.copy_(torch.eye(self.dim, device=self.v.weight.device, dtype=self.v.weight.dtype))
        k = math.isqrt(self.num_heads)
        c = (k - 1) / 2
        w = self.pos_proj.weight
        for p in range(k * k):
            w[p, 0] = 2 * (p // k - c)
            w[p, 1] = 2 * (p % k - c)
            w[p, 2] = -1
        w.mul_(self.locality_strength)

    def offsets(self, grid_size: tuple[int, int]) -> torch.Tensor:
        """The ``(1, N, N, 3)`` relative-offset table for a patch grid, on the layer's device / dtype."""
        ref = self.qk.weight
        gh, gw = grid_size
        traced = not (isinstance(gh, int) and isinstance(gw, int))  # torch.fx proxies, symbolic sizes
        if traced or torch.compiler.is_compiling() or torch.jit.is_tracing():  # build in-graph, keep no state
            return relative_offsets(grid_size, device=ref.device, dtype=ref.dtype)
        key = (gh, gw, ref.device, ref.dtype)
        table = self._offsets.get(key)
        if table is None:
            if len(self._offsets) >= _CACHE_LIMIT:
                self._offsets.clear()
            table = relative_offsets(grid_size, device=ref.device, dtype=ref.dtype)
            self._offsets[key] = table
        return table

    def attention(self, x: torch.Tensor, grid_size: tuple[int, int] | None = None) -> torch.Tensor:
        """The gated attention weights ``(B, heads, N, N)``, rows summing to one."""
        B, N, C = x.shape
        grid = check_grid(N, grid_size)
        q, k = self.qk(x).reshape(B, N, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        content = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        position = self.pos_proj(self.offsets(grid)).permute(0, 3, 1, 2).softmax(dim=-1)
        gate = torch.sigmoid(self.gating_param).view(1, -1, 1, 1)
        attn = (1.0 - gate) * content + gate * position
        attn = attn / attn.sum(dim=-1, keepdim=True)
        return self.attn_drop(attn)

    def forward(self, x: torch.Tensor, grid_size: tuple[int, int] | None = None) -> torch.Tensor:
        """``x``: ``(B, N, C)`` patch tokens in row-major order; ``grid_size``: (h, w), default square."""
        B, N, C = x.shape
        attn = self.attention(x, grid_size)
        v = self.v(x).reshape(B, N, self.num_heads, self.head_dim).transpose(1, 2)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj_drop(self.proj(x))


class MultiHeadSelfAttention(Attention):
    """timm's multi-head self-attention (ConViT's non-local blocks, on PyTorch SDPA), also taking the
    ``grid_size`` it does not need, so a ConViT block calls either of its layers the same way."""

    def forward(
        self,
        x: torch.Tensor,
        grid_size: tuple[int, int] | None = None,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
    ) -> torch.Tensor:
        """``x``: ``(B, N, C)``; ``grid_size`` is ignored."""
        return super().forward(x, attn_mask=attn_mask, is_causal=is_causal)

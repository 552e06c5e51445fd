"""The projections around an attention mixer, with timm ``Attention``'s constructor and parameters.

attnzoo's ViT attention layers (InfSA, Sparsifiner, Fourier-KArAt) differ only in how q, k and v are
mixed. What surrounds the mixing -- the fused ``qkv`` projection, optional ``q_norm`` / ``k_norm`` /
``norm``, the output ``proj`` and the dropouts -- is timm ``Attention``'s, with its names, so each layer
drops into ``timm.models.vision_transformer.Block(attn_layer=...)`` and loads a softmax ViT's weights.
It is written once here.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["HeadProjections"]


class HeadProjections(nn.Module):
    """timm ``Attention``'s projections; subclasses mix the heads between :meth:`split_heads` and
    :meth:`merge_heads`. ``attn_head_dim`` overrides ``dim // num_heads``."""

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = False,
        qk_norm: bool = False,
        scale_norm: bool = False,
        proj_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        norm_layer: Callable[..., nn.Module] | None = None,
        attn_head_dim: int | None = None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if attn_head_dim is None and dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        if (qk_norm or scale_norm) and norm_layer is None:
            raise ValueError("qk_norm / scale_norm need a norm_layer")
        dd = {"device": device, "dtype": dtype}
        self.num_heads = num_heads
        self.head_dim = attn_head_dim or dim // num_heads
        self.attn_dim = self.num_heads * self.head_dim
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * self.attn_dim, bias=qkv_bias, **dd)
        self.q_norm = norm_layer(self.head_dim, **dd) if qk_norm else nn.Identity()
        self.k_norm = norm_layer(self.head_dim, **dd) if qk_norm else nn.Identity()
        self.attn_drop = nn.Dropout(attn_drop)
        self.norm = norm_layer(self.attn_dim, **dd) if scale_norm else nn.Identity()
        self.proj = nn.Linear(self.attn_dim, dim, bias=proj_bias, **dd)
        self.proj_drop = nn.Dropout(proj_drop)

    def split_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``[B, N, C]`` -> q, k, v ``[B, heads, N, head_dim]`` (q and k through their norms)."""
        B, N, _ = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        return self.q_norm(q), self.k_norm(k), v

    def merge_heads(self, o: torch.Tensor) -> torch.Tensor:
        """``[B, heads, N, head_dim]`` -> ``[B, N, C]`` through ``norm``, ``proj`` and its dropout."""
        B, _, N, _ = o.shape
        o = self.norm(o.transpose(1, 2).reshape(B, N, self.attn_dim))
        return self.proj_drop(self.proj(o))

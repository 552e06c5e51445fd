"""MALA's attention layers (Fan et al., ICCV 2025): magnitude-aware linear attention and the softmax
attention of its late stages, both in one gated, RoPE'd frame.

Frame (official ``AddLinearAttention`` / ``VanillaSelfAttention``): a 1x1 conv makes ``[q | k | v | o]``
from the channels-first map (heads split each of them outermost-first); LePE, a depthwise 5x5 conv on
``v``, is added to the mixed values, which are gated by ``o`` and projected by a 1x1 conv (``proj``).
q and k are rotated with 2-D RoPE (:mod:`attnzoo.layers.rope`) before mixing.

Magnitude-aware linear attention, per head, with ``phi(x) = elu(x) + 1`` and ``s = head_dim ** -0.5``::

    z_i = s * phi(q_i) . mean_j phi(k_j)          (before RoPE)
    out_i = (s / N) * rope(phi(q_i)) K^T V * (1 + 1 / (z_i + 1e-6)) - z_i * mean_j v_j

with ``K`` the rotated ``phi(k)``; the kernel is :func:`attnzoo.kernels.linear_attention` (``kind='mala'``).
Softmax attention runs SDPA on the rotated q, k. Both take maps of any size: attention is global.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_function
from torch import nn

from attnzoo.kernels.linear_attention import linear_attention
from attnzoo.layers.rope import apply_rope_2d, rope_2d_sin_cos

__all__ = ["MagnitudeAwareLinearAttention", "RoPESoftmaxAttention"]

register_notrace_function(linear_attention)  # checks shapes and picks a kernel per call


class _GatedLePEAttention(nn.Module):
    """The shared frame; subclasses define :meth:`mix` on ``[B, heads, N, head_dim]`` tensors."""

    def __init__(self, dim: int, num_heads: int, device=None, dtype=None) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        dd = dict(device=device, dtype=dtype)
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkvo = nn.Conv2d(dim, 4 * dim, 1, **dd)
        self.lepe = nn.Conv2d(dim, dim, 5, padding=2, groups=dim, **dd)
        self.proj = nn.Conv2d(dim, dim, 1, **dd)

    def mix(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, sin, cos) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, C, H, W)``."""
        b, c, h, w = x.shape
        qkv, o = self.qkvo(x).split([3 * c, c], dim=1)
        lepe = self.lepe(qkv[:, 2 * c :])
        q, k, v = qkv.reshape(b, 3, self.num_heads, self.head_dim, h * w).transpose(-1, -2).unbind(1)
        sin, cos = rope_2d_sin_cos(h, w, self.head_dim, x.dtype, x.device)
        out = self.mix(q, k, v, sin, cos)  # [B, heads, N, head_dim]
        out = out.transpose(-1, -2).reshape(b, c, h, w)
        return self.proj((out + lepe) * o)


class MagnitudeAwareLinearAttention(_GatedLePEAttention):
    """MALA's linear attention (official ``AddLinearAttention``): O(N) in the token count."""

    def mix(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, sin, cos) -> torch.Tensor:
        q, k = F.elu(q) + 1, F.elu(k) + 1
        q_rot, k_rot = apply_rope_2d(q, sin, cos), apply_rope_2d(k, sin, cos)
        return linear_attention(q_rot, k_rot, v, q, k, kind="mala", scale=self.scale)


class RoPESoftmaxAttention(_GatedLePEAttention):
    """Softmax attention in MALA's frame (official ``VanillaSelfAttention``), through SDPA."""

    def mix(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, sin, cos) -> torch.Tensor:
        q, k = apply_rope_2d(q, sin, cos), apply_rope_2d(k, sin, cos)
        return F.scaled_dot_product_attention(q, k, v, scale=self.scale)

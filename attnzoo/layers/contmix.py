"""ContMix: OverLoCK's context-mixing dynamic kernels (Lou & Yu, CVPR 2025, arXiv:2502.20087).

Every pixel gets its own depthwise kernels, built from how its query relates to a 7 x 7 pooled
context map: the query (``weight_query``, scaled by ``(C / G)^-0.5``) meets the pooled context keys
(``weight_key``) in ``G`` groups, one shared 1 x 1 conv (``weight_proj``) turns the 49 affinities into
``s^2 + K^2`` logits, a relative position bias per kernel is added (``rpb1`` for the small ``s x s``
kernel, ``rpb2`` for the stage's ``K x K`` one) and each kernel gets its own softmax. The small kernel
aggregates the first half of the value channels, the large one the second half, over windows that
shift inward at the borders (NATTEN's rule), never zero-padded.

Since the logits are linear in the query, the keys and ``weight_proj`` fold into one
``[B, G, C / G, s^2 + K^2]`` matrix per image; :func:`attnzoo.kernels.contmix.contmix` takes that
matrix and never builds the ``[B, G, H, W, K^2]`` weights. Maps smaller than the large kernel are
resized up bilinearly first and pooled back after, as the official model does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnzoo.kernels.contmix import contmix

__all__ = ["ContMix"]


class ContMix(nn.Module):
    """The dynamic-kernel part of a ContMix block: parameters and :meth:`mix`.

    Args:
        dim: channels of the values (and of the query source); the queries have ``dim // 2``.
        ctx_dim: channels of the context the keys are pooled from.
        kernel_size: the large kernel ``K``; ``smk_size``: the small one ``s``.
        groups: kernel groups ``G`` (OverLoCK: twice the stage's ``sub_num_heads``).
        pool_size: side of the pooled context map (7: 49 keys).

    Blocks subclass it, so its parameters keep the official names at block level (``weight_query``,
    ``weight_key``, ``weight_proj``, ``rpb1``, ``rpb2``).
    """

    def __init__(
        self,
        dim: int,
        ctx_dim: int,
        kernel_size: int,
        smk_size: int = 5,
        groups: int = 8,
        pool_size: int = 7,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if dim % (2 * groups) or (dim // 2) % groups:
            raise ValueError(f"ContMix: dim {dim} must split into 2 x {groups} value groups")
        dd = dict(device=device, dtype=dtype)
        self.kernel_size, self.smk_size, self.groups = kernel_size, smk_size, groups
        self.scale = (dim // groups) ** -0.5
        self.weight_query = nn.Sequential(
            nn.Conv2d(dim, dim // 2, 1, bias=False, **dd), nn.BatchNorm2d(dim // 2, **dd)
        )
        self.weight_key = nn.Sequential(
            nn.AdaptiveAvgPool2d(pool_size),
            nn.Conv2d(ctx_dim, dim // 2, 1, bias=False, **dd),
            nn.BatchNorm2d(dim // 2, **dd),
        )
        self.weight_proj = nn.Conv2d(pool_size**2, kernel_size**2 + smk_size**2, 1, **dd)
        self.rpb1 = nn.Parameter(torch.zeros(groups, 2 * smk_size - 1, 2 * smk_size - 1, **dd))
        self.rpb2 = nn.Parameter(torch.zeros(groups, 2 * kernel_size - 1, 2 * kernel_size - 1, **dd))

    def _grouped(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, G * c, H, W]`` -> ``[B, G, H, W, c]`` (channels-last per group, what the op reads)."""
        b, c, h, w = x.shape  # explicit sizes (no -1): an empty batch reshapes too
        return x.reshape(b, self.groups, c // self.groups, h, w).permute(0, 1, 3, 4, 2)

    def mix(self, values: torch.Tensor, query_source: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Aggregate ``values`` ``[B, dim, H, W]`` with kernels from ``query_source`` ``[B, dim, H, W]``
        and ``context`` ``[B, ctx_dim, H, W]``; returns ``[B, dim, H, W]``."""
        b, c, h, w = values.shape
        k = self.kernel_size
        resized = min(h, w) < k
        if resized:  # the official rule: the short side becomes K, the long one scales with it (floored)
            size = (k, int(k / h * w)) if h < w else (int(k / w * h), k)
            values, query_source, context = (
                F.interpolate(t, size=size, mode="bilinear", align_corners=False)
                for t in (values, query_source, context)
            )
        q = self._grouped(self.weight_query(query_source) * self.scale)
        keys = self.weight_key(context).flatten(2).unflatten(1, (self.groups, q.shape[-1]))
        proj = torch.einsum("bgcl,ol->bgco", keys, self.weight_proj.weight.flatten(1))
        s2 = self.smk_size**2
        small_v, large_v = values.chunk(2, dim=1)
        small = contmix(q, proj[..., :s2], self.weight_proj.bias[:s2], self.rpb1, self._grouped(small_v))
        large = contmix(q, proj[..., s2:], self.weight_proj.bias[s2:], self.rpb2, self._grouped(large_v))
        out = torch.cat([small, large], dim=1).permute(0, 1, 4, 2, 3).reshape(b, c, *values.shape[-2:])
        return F.adaptive_avg_pool2d(out, (h, w)) if resized else out

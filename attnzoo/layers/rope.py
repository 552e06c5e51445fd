"""2-D rotary position embedding: half of each head's channels rotate with the row, half with the column.

MALA's form (``RoPE`` in the official ``classfication_release/model.py``): ``head_dim // 4``
frequencies ``10000 ** -linspace(0, 1, head_dim // 4)`` (both ends included, unlike the usual
``arange / n``), each used for one interleaved channel pair; the first half of the channels takes
``row * freq``, the second half ``column * freq``; pairs rotate as ``(x0, x1) -> (-x1, x0)``
(timm's :func:`~timm.layers.apply_rot_embed`).

The frequencies are computed in float32 whatever the model's dtype, as the official buffer is built
before any cast: a float64 model then matches the official one bit for bit, where float64 frequencies
would differ by ~7e-7 in sin / cos.
"""

from __future__ import annotations

import torch
from timm.layers import apply_rot_embed, register_notrace_function

__all__ = ["apply_rope_2d", "rope_2d_frequencies", "rope_2d_sin_cos"]


def rope_2d_frequencies(head_dim: int) -> torch.Tensor:
    """The ``head_dim // 2`` float32 angles per unit step, each frequency twice (one channel pair)."""
    if head_dim % 4:
        raise ValueError(f"2-D RoPE needs a head_dim divisible by 4, got {head_dim}")
    freq = 1.0 / (10000 ** torch.linspace(0, 1, head_dim // 4, dtype=torch.float32))
    return freq.repeat_interleave(2)


@register_notrace_function  # built from the map size: torch.fx keeps it as one call
def rope_2d_sin_cos(
    height: int, width: int, head_dim: int, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sin, cos)``, each ``[height * width, head_dim]`` in row-major token order.

    ``dtype`` is float64 for a float64 model and float32 otherwise (16-bit maps rotate in float32).
    """
    dtype = torch.float64 if dtype == torch.float64 else torch.float32
    freq = rope_2d_frequencies(head_dim).to(device=device, dtype=dtype)
    rows = torch.arange(height, device=device, dtype=dtype)[:, None] * freq  # [H, D/2]
    cols = torch.arange(width, device=device, dtype=dtype)[:, None] * freq  # [W, D/2]
    angles = torch.cat(
        [rows[:, None].expand(-1, width, -1), cols[None].expand(height, -1, -1)], dim=-1
    ).flatten(0, 1)
    return angles.sin(), angles.cos()


def apply_rope_2d(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` (``[..., H * W, head_dim]``) by the table of :func:`rope_2d_sin_cos`."""
    return apply_rot_embed(x, sin, cos)

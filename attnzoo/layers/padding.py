"""Zero padding of maps to whole patches / windows, the one rule every family that accepts any input
size uses before a strided conv or a window split."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_function

__all__ = ["pad_to_multiple"]


@register_notrace_function  # branches on the map size: torch.fx keeps it as one call
def pad_to_multiple(x: torch.Tensor, multiple: int, channels_last: bool = False) -> torch.Tensor:
    """A ``(..., H, W)`` map (``(..., H, W, C)`` with ``channels_last``) zero-padded at the bottom /
    right to whole multiples of ``multiple``."""
    h_dim = -3 if channels_last else -2
    pad_h, pad_w = -x.shape[h_dim] % multiple, -x.shape[h_dim + 1] % multiple
    if not (pad_h or pad_w):
        return x
    channels = (0, 0) if channels_last else ()  # F.pad's pairs run from the last dim backwards
    return F.pad(x, (*channels, 0, pad_w, 0, pad_h))

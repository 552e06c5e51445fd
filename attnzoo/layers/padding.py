"""Zero padding of channels-first maps to whole patches / windows, the one rule every family that
accepts any input size uses before a strided conv or a window split."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_function

__all__ = ["pad_to_multiple"]


@register_notrace_function  # branches on the map size: torch.fx keeps it as one call
def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """A ``(..., H, W)`` map zero-padded at the bottom / right to whole multiples of ``multiple``."""
    pad_h, pad_w = -x.shape[-2] % multiple, -x.shape[-1] % multiple
    return F.pad(x, (0, pad_w, 0, pad_h)) if pad_h or pad_w else x

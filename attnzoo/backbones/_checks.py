"""Input checks shared by the backbones, so every family names a bad input the same way."""

from __future__ import annotations

import torch
from timm.layers import register_notrace_function

__all__ = ["check_images"]


@register_notrace_function  # branches on the shape: torch.fx keeps it as one opaque call
def check_images(x: torch.Tensor, in_chans: int, family: str) -> None:
    """Raise ``ValueError`` unless ``x`` is a ``(B, in_chans, H, W)`` batch of images."""
    if x.ndim != 4 or x.shape[1] != in_chans:
        got = x.shape[1] if x.ndim == 4 else f"a {x.ndim}-d tensor"
        raise ValueError(
            f"{family} expects (B, {in_chans}, H, W) images with {in_chans} input channels, "
            f"got {got} channels (shape {tuple(x.shape)})"
        )

"""Input checks shared by the backbones, so every family names a bad input the same way."""

from __future__ import annotations

import torch
from timm.layers import register_notrace_function

__all__ = ["check_global_pool", "check_images", "check_output_fmt"]


@register_notrace_function  # branches on the shape: torch.fx keeps it as one opaque call
def check_images(x: torch.Tensor, in_chans: int, family: str) -> None:
    """Raise ``ValueError`` unless ``x`` is a ``(B, in_chans, H, W)`` batch of images (rank first: a
    single ``(C, H, W)`` image or a ``(B, T, C, H, W)`` clip is named as such, not as a channel count)."""
    if x.ndim != 4:
        raise ValueError(
            f"{family} expects 4-d (B, {in_chans}, H, W) images, got a {x.ndim}-d tensor of shape "
            f"{tuple(x.shape)}" + (" (one image: add the batch axis, x[None])" if x.ndim == 3 else "")
        )
    if x.shape[1] != in_chans:
        raise ValueError(
            f"{family} expects (B, {in_chans}, H, W) images with {in_chans} input channels, "
            f"got {x.shape[1]} channels (shape {tuple(x.shape)})"
        )


def check_global_pool(global_pool: str) -> str:
    """``global_pool`` if it is one the backbones support (``''`` or ``'avg'``), else a ValueError."""
    if global_pool not in ("", "avg"):
        raise ValueError(f"global_pool must be '' or 'avg', got {global_pool!r}")
    return global_pool


def check_output_fmt(output_fmt: str) -> None:
    """A ValueError unless ``output_fmt`` is ``'NCHW'`` or ``'NHWC'`` (``forward_intermediates``)."""
    if output_fmt not in ("NCHW", "NHWC"):
        raise ValueError(f"output_fmt must be 'NCHW' or 'NHWC', got {output_fmt!r}")

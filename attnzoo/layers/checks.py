"""Input checks shared by attnzoo's timm-compatible attention layers."""

from __future__ import annotations

import torch
from timm.layers import register_notrace_function

__all__ = ["check_no_mask"]


# torch.fx: timm's ViT passes both as traced inputs, so the check runs with the graph (timm's notrace
# registry wraps it, by identity, in the globals of every module whose forward a trace enters).
@register_notrace_function
def check_no_mask(attn_mask: torch.Tensor | None, is_causal: bool, layer: str) -> None:
    """Raise unless there is no attention mask and no causal mode: timm's blocks pass both, and the
    layer named ``layer`` (InfSA, Sparsifiner, Fourier-KArAt) has neither."""
    if attn_mask is not None or is_causal:
        raise NotImplementedError(f"{layer} supports no attention mask / causal mode")

"""Attention and mixer modules shared by the backbones (built on attnzoo.kernels)."""

from attnzoo.layers.gpsa import GatedPositionalSelfAttention, MultiHeadSelfAttention
from attnzoo.layers.halo_attention import HaloAttention, RelPosTables

__all__ = [
    "GatedPositionalSelfAttention",
    "HaloAttention",
    "MultiHeadSelfAttention",
    "RelPosTables",
]

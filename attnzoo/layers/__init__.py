"""Attention and mixer modules shared by the backbones (built on attnzoo.kernels)."""

from attnzoo.layers.bilevel_routing import BiLevelRoutingAttention, GlobalAttentionLePE
from attnzoo.layers.gpsa import GatedPositionalSelfAttention, MultiHeadSelfAttention
from attnzoo.layers.halo_attention import HaloAttention, RelPosTables

__all__ = [
    "BiLevelRoutingAttention",
    "GatedPositionalSelfAttention",
    "GlobalAttentionLePE",
    "HaloAttention",
    "MultiHeadSelfAttention",
    "RelPosTables",
]

"""Attention and mixer modules shared by the backbones (built on attnzoo.kernels)."""

from attnzoo.layers.bilevel_routing import BiLevelRoutingAttention, GlobalAttentionLePE
from attnzoo.layers.contmix import ContMix
from attnzoo.layers.eca import EcaModule
from attnzoo.layers.fourier_karat import FourierKArAtAttention, FourierOperator
from attnzoo.layers.gpsa import GatedPositionalSelfAttention, MultiHeadSelfAttention
from attnzoo.layers.halo_attention import HaloAttention, RelPosTables
from attnzoo.layers.infinite_attention import InfiniteSelfAttention, swap_attention
from attnzoo.layers.inline import InjectiveLinearAttention, LocalResidual
from attnzoo.layers.mala import MagnitudeAwareLinearAttention, RoPESoftmaxAttention
from attnzoo.layers.reparam import DilatedReparamBlock
from attnzoo.layers.rope import apply_rope_2d, rope_2d_sin_cos
from attnzoo.layers.sparsifiner import ConnectivityPredictor, SparsifinerAttention

__all__ = [
    "BiLevelRoutingAttention",
    "ConnectivityPredictor",
    "ContMix",
    "DilatedReparamBlock",
    "EcaModule",
    "FourierKArAtAttention",
    "FourierOperator",
    "GatedPositionalSelfAttention",
    "GlobalAttentionLePE",
    "HaloAttention",
    "InfiniteSelfAttention",
    "InjectiveLinearAttention",
    "LocalResidual",
    "MagnitudeAwareLinearAttention",
    "MultiHeadSelfAttention",
    "RelPosTables",
    "RoPESoftmaxAttention",
    "SparsifinerAttention",
    "apply_rope_2d",
    "rope_2d_sin_cos",
    "swap_attention",
]

"""Triton kernels with pure-torch references, and the rule that dispatches between them.

Each op is a package (``halo_attention``, ``bilevel_routing``, ``infinite_attention``,
``topk_attention``, ``fourier_karat``, ``contmix``, ``linear_attention``) of a
``reference`` (plain torch), ``kernels`` (``@triton.jit``, imported only with Triton), ``op`` (checks,
dispatch, the ``torch.ops.attnzoo`` registration) and ``spec`` (its :mod:`.registry` entry, which the
kernel battery tests). Importing this package imports every op package, so the registry is full.
"""

from attnzoo.kernels.bilevel_routing import bilevel_routing, bilevel_routing_attention
from attnzoo.kernels.contmix import contmix, contmix_reference
from attnzoo.kernels.dispatch import kernel_backend, triton_available, use_kernels, use_triton
from attnzoo.kernels.fourier_karat import fourier_karat, fourier_karat_reference
from attnzoo.kernels.halo_attention import halo_attention, halo_attention_reference
from attnzoo.kernels.infinite_attention import (
    infsa_linear,
    infsa_linear_reference,
    infsa_pure,
    infsa_pure_reference,
)
from attnzoo.kernels.linear_attention import linear_attention, linear_attention_reference
from attnzoo.kernels.topk_attention import topk_attention, topk_attention_reference

__all__ = [
    "bilevel_routing",
    "bilevel_routing_attention",
    "contmix",
    "contmix_reference",
    "fourier_karat",
    "fourier_karat_reference",
    "halo_attention",
    "halo_attention_reference",
    "infsa_linear",
    "infsa_linear_reference",
    "infsa_pure",
    "infsa_pure_reference",
    "kernel_backend",
    "linear_attention",
    "linear_attention_reference",
    "topk_attention",
    "topk_attention_reference",
    "triton_available",
    "use_kernels",
    "use_triton",
]

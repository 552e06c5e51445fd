"""Triton kernels with pure-torch references, and the rule that dispatches between them."""

from attnzoo.kernels.dispatch import kernel_backend, triton_available, use_kernels, use_triton
from attnzoo.kernels.halo_attention import halo_attention, halo_attention_reference

__all__ = [
    "halo_attention",
    "halo_attention_reference",
    "kernel_backend",
    "triton_available",
    "use_kernels",
    "use_triton",
]

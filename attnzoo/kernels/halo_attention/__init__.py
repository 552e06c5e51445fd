"""Blocked local ("halo") attention: each query block attends to its key block plus a halo.

Layout, per (batch * head) slice ``bh``:

- ``q``: ``[BH, Hq, Wq, Dqk]``, query grid cut into ``block_q x block_q`` blocks;
- ``k``, ``v``: ``[BH, Hk, Wk, D]``, already zero-padded by the halo, so block ``(by, bx)`` reads the
  ``win x win`` window whose top-left corner is ``(by * block_kv, bx * block_kv)``;
- ``qrh``, ``qrw``: ``[BH, Hq, Wq, 2 * win - 1]``, the products of each query with the height / width
  relative-position tables. The logit of query ``(i, j)`` (position inside its block) for window key
  ``(p, c)`` is ``scale * q.k + qrh[..., p - i + win - 1] + qrw[..., c - j + win - 1]`` (HaloNet's
  relative logits; timm's ``rel_logits_1d`` computes the same gather with pads and reshapes).

Padded keys are zero vectors that still take part in the softmax, exactly as in timm's HaloAttn.
The Triton kernels read the windows straight from ``k``/``v`` (no unfolded copy) and keep the logits
in registers. The forward and the dQ backward walk each query block's window in key chunks (online
softmax in the forward), so a window pads to a multiple of the chunk, not the next power of two. dK
and dV come from a second backward kernel, one program per key tile, that loops over the query blocks
whose windows cover the tile: windows overlap in the halo, yet every gradient is written once, without
atomics (deterministic), as are the relative-logit gradients (each query owns its row).

Modules: ``reference`` (plain torch), ``kernels`` (``@triton.jit``), ``op`` (checks, dispatch, the
``torch.ops.attnzoo.halo_attention`` op), ``spec`` (its entry in the kernel registry).
"""

from attnzoo.kernels.halo_attention import spec  # noqa: F401  (registers its KernelSpec)
from attnzoo.kernels.halo_attention.op import halo_attention
from attnzoo.kernels.halo_attention.reference import halo_attention_reference

__all__ = ["halo_attention", "halo_attention_reference"]

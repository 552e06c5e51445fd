"""ContMix (OverLoCK's context-mixing dynamic convolution): every pixel aggregates its ``K x K``
neighbourhood of values with softmax weights made from its own query and a per-image kernel basis.

Layout, per image ``b`` and channel group ``g``: ``q`` ``[B, G, H, W, C]`` (already scaled), ``proj``
``[B, G, C, K * K]`` (one matrix per image and group, mapping a query to ``K * K`` logits),
``proj_bias`` ``[K * K]``, ``rpb`` ``[G, 2K - 1, 2K - 1]`` (relative-position bias; ``K`` odd, read from
its shape) and ``v`` ``[B, G, H, W, Cv]``. The window of pixel ``(i, j)`` starts at row
``s(i) = clamp(i - K // 2, 0, H - K)`` (centred, pushed inward at the borders, NATTEN's rule; columns
alike), so it always lies inside the map, which must be at least ``K x K``. For window offset
``(a, c)``, ``n = a * K + c``::

    logit[b, g, i, j, n] = q[b, g, i, j] . proj[b, g, :, n] + proj_bias[n]
                           + rpb[g, s(i) + a - i + K - 1, s(j) + c - j + K - 1]
    out[b, g, i, j] = sum_n softmax_n(logit[b, g, i, j]) v[b, g, s(i) + a, s(j) + c]

The reference materialises the ``[B, G, H, W, K * K]`` weights and ``[.., K * K, Cv]`` windows. The
Triton kernels never write either: the forward recomputes each window row's logits with one
``tl.dot`` (q tile times ``K`` columns of ``proj``), gathers values by pointer, keeps an online
softmax in fp32 and saves the per-pixel log-sum-exp. The backward is deterministic, without atomics:
dq per pixel; dv per value location over the pixels whose window holds it; dproj and the offset-wise
bias gradients per ``(image, window row)`` over all pixels, folded into ``proj_bias`` / ``rpb`` on the
host by fixed deterministic sums.

Modules: ``reference`` (plain torch and the input checks), ``kernels`` (``@triton.jit``), ``op``
(checks, dispatch, the ``torch.ops.attnzoo.contmix`` op), ``spec`` (its entry in the kernel
registry).
"""

from attnzoo.kernels.contmix import spec  # noqa: F401  (registers its KernelSpec)
from attnzoo.kernels.contmix.op import contmix
from attnzoo.kernels.contmix.reference import contmix_reference

__all__ = ["contmix", "contmix_reference"]

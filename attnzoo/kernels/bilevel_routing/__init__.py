"""Bi-level routing attention (BiFormer): region-level top-k routing, then token attention over the
tokens of the selected regions.

Geometry. A ``H x W`` map is cut into a grid of ``region_h x region_w`` regions, row-major, the last
row / column of regions possibly cut short by the map border (``region_grid``). Tokens outside the
map (the bottom / right padding up to whole regions) never exist as keys: they are masked out of the
softmax and left out of the region means, and regions are never empty, so every query has keys.

Routing (:func:`bilevel_routing`): region query / key = the mean of the region's q / k over its tokens
(full channel width, shared by all heads, no gradient), affinity = ``(q_r * scale) @ k_r^T``, and each
query region keeps the indices of its ``topk`` highest-affinity regions (itself not forced in).

Attention (:func:`bilevel_routing_attention`), per head: every query token of region ``r`` attends, by
one softmax, to all tokens of the regions ``idx[b, r, :]``. Layout:

- ``q``, ``k``: ``[B, M, H, W, Dqk]`` and ``v``: ``[B, M, H, W, Dv]`` (M heads, unpadded maps);
- ``idx``: ``[B, R, K]`` integer region indices in ``[0, R)``, shared by the heads of one image
  (others raise a ValueError on both paths; while a graph is compiled or exported the check is
  skipped and the kernels mask them, so nothing outside ``k`` / ``v`` is ever read).

The reference gathers the K selected regions into a ``[B, M, R, K * T, D]`` copy as the official
``torch.gather`` path does. The Triton kernels read the selected regions straight from ``k`` / ``v``
through the routing table (no gathered copy, no padded copy), keep an online softmax in registers,
and run a deterministic backward without atomics: dQ per query block, dK / dV per key block over
the query regions that routed to it. Regions of fewer than 16 tokens are packed several to a block,
each block walking the merged list of its regions' routed (or routing) regions; a small counting
kernel builds those lists and the inverted routing, once per image, without a sort. The backward is
three launches (lists, dQ with ``rowsum(dO * O)``, dK / dV).

Modules: ``reference`` (routing and the plain-torch attention), ``kernels`` (``@triton.jit``), ``op``
(checks, dispatch, the ``torch.ops.attnzoo.bilevel_routing_attention`` op), ``spec`` (its entry in
the kernel registry).
"""

from attnzoo.kernels.bilevel_routing import spec  # noqa: F401  (registers its KernelSpec)
from attnzoo.kernels.bilevel_routing.op import bilevel_routing_attention
from attnzoo.kernels.bilevel_routing.reference import (
    bilevel_routing,
    bilevel_routing_attention_reference,
    region_grid,
)

__all__ = [
    "bilevel_routing",
    "bilevel_routing_attention",
    "bilevel_routing_attention_reference",
    "region_grid",
]

"""Top-k (per-row sparse) attention, as Sparsifiner uses it: every query attends to its own learned
set of keys.

Layout: ``q`` ``[B, H, M, D]``, ``k`` ``[B, H, N, D]``, ``v`` ``[B, H, N, Dv]`` and ``idx``
``[B, H, M, K]`` (int32 or int64) key indices in ``[0, N)``. Query row ``m`` attends, by one softmax
over its ``K`` selected keys, to ``k[idx[b, h, m, :]]``::

    out[b, h, m] = sum_j softmax_j(scale * q[b, h, m] . k[b, h, idx_j]) v[b, h, idx_j]

with gather semantics (an index listed twice counts twice; Sparsifiner never repeats one). This equals
dense attention with a boolean ``[M, N]`` mask (Sparsifiner's ``masked_fill(~mask, -inf)``) at ``K / N``
of its work. Indices outside ``[0, N)`` raise a ValueError on both paths.

The reference gathers ``[B, H, M, K, D]`` copies of the selected keys / values. The Triton kernels
read the selected keys straight from ``k`` / ``v`` (pointer gathers, no copy): the forward keeps an
online softmax in fp32 over ``K`` in steps of at most 64 keys and saves the per-row log-sum-exp; the
backward is deterministic, without atomics: dQ per query row (scores recomputed from the saved
log-sum-exp), dK / dV per key over the query rows that selected it (an inverted index from one
sort). One query row per program (``op.ROWS_PER_PROGRAM``, chosen by measurement).

Modules: ``reference`` (plain torch and the input checks), ``kernels`` (``@triton.jit``), ``op``
(checks, dispatch, the ``torch.ops.attnzoo.topk_attention`` op), ``spec`` (its entry in the kernel
registry).
"""

from attnzoo.kernels.topk_attention import spec  # noqa: F401  (registers its KernelSpec)
from attnzoo.kernels.topk_attention.op import topk_attention
from attnzoo.kernels.topk_attention.reference import topk_attention_reference

__all__ = ["topk_attention", "topk_attention_reference"]

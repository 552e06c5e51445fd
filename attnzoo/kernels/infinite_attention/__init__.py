"""Infinite Self-Attention (InfSA, Roffo et al., arXiv:2603.00175): pure and linear forms.

Both forms scale q and k *each* by ``scale`` (``head_dim ** -0.5`` by default, so the logits are
``q.k / head_dim``) and leave ``rho`` (``sigmoid(rho_logit)``) to the caller, who multiplies it on
the result as a tensor so that it trains and exports.

Pure (quadratic), per (batch, head) slice with ``R = relu((q s)(k s)^T)`` (``N x N``)::

    out = R V / (||R||_F + eps)

The Frobenius norm runs over the whole map; there is no softmax and no row normalisation. The Triton
kernel never materialises ``R``: each query tile accumulates ``R V`` and its sum of ``R**2`` over key
tiles (fp32); the norm spans the slice, so a second, elementwise kernel adds the tile sums in tile
order and scales. Backward: with ``c = n + eps`` and ``n = ||R||_F``,
``dR = (dO V^T - beta R) / c`` where ``beta = <dO V^T, R> / (c n) = <dO, O> / n``: the extra reduction
over the ``N x N`` map collapses to an ``O(N D)`` dot of ``dO`` and ``O`` (like flash attention's
``delta``), which a small kernel splits into per-tile shares that every dK / dV and dQ program adds in
tile order; ``dS = dR * [S > 0]``. Long slices use 128-token program tiles over 64-token inner ones.

Linear, per slice::

    w_i = ||q_i s|| / (sum_i ||q_i s|| + eps),   q_bar = sum_i w_i q_i s
    a_j = relu(q_bar . k_j s) / (sum_j relu(q_bar . k_j s) + eps),   pooled = sum_j a_j v_j

Every token receives the same ``pooled`` vector, so the op returns ``pooled`` once per slice
(``[..., D]``) and the layer applies its output projection once per image. The Triton kernels make
two memory-bound passes (queries, then keys and values; backward: keys, then queries), each split
into token chunks, one program per (chunk, slice), so that a batch of one image still fills the GPU:
the next kernel adds a pass's partial sums in chunk order (deterministic, no atomics; see
:mod:`attnzoo.kernels.common.linear_reduce`). A slice of one chunk runs both passes in one program.

Modules: ``reference`` (plain torch), ``kernels`` (``@triton.jit``), ``op`` (checks, dispatch, the
``torch.ops.attnzoo.infsa_pure`` / ``infsa_linear`` ops), ``spec`` (their entries in the kernel
registry).
"""

from attnzoo.kernels.infinite_attention import spec  # noqa: F401  (registers the KernelSpecs)
from attnzoo.kernels.infinite_attention.op import infsa_linear, infsa_pure
from attnzoo.kernels.infinite_attention.reference import (
    infsa_linear_reference,
    infsa_linear_scores_reference,
    infsa_pure_reference,
    infsa_pure_scores_reference,
)

__all__ = [
    "infsa_linear",
    "infsa_linear_reference",
    "infsa_linear_scores_reference",
    "infsa_pure",
    "infsa_pure_reference",
    "infsa_pure_scores_reference",
]

"""Linear attention with a per-token mean correction: the shared core of MALA (magnitude-aware linear
attention) and InLine (injective linear attention).

Per (batch..., head) slice of ``N`` tokens, with ``s = scale`` (``head_dim ** -0.5`` by default), in
fp32 whatever the input dtype::

    m    = mean_j zk_j                  (D)
    z_i  = s * (zq_i . m)               (one number per token)
    KV   = sum_j k_j v_j^T              (D x Dv)
    vbar = mean_j v_j                   (Dv)
    mala:   out_i = (q_i KV) * (s / N) * (1 + 1 / (z_i + eps)) - z_i * vbar
    inline: out_i = (q_i KV) * (s / N) + (1 - z_i) * vbar

``zq`` and ``zk`` default to ``q`` and ``k``; MALA passes its RoPE-rotated q, k as ``q``, ``k`` and the
un-rotated (positive, ``elu + 1``) ones as ``zq``, ``zk``. Nothing of size ``N x N`` is ever built.

Write ``out_i = c_i (q_i KV) + r_i vbar`` (mala: ``c = (s / N)(1 + 1 / (z + eps))``, ``r = -z``;
inline: ``c = s / N``, ``r = 1 - z``). Backward::

    dq_i  = c_i dO_i KV^T                     dKV   = sum_i c_i q_i^T dO_i
    dc_i  = dO_i . (q_i KV)                   dr_i  = dO_i . vbar
    dz_i  = dc_i dc/dz + dr_i dr/dz           (mala: dc/dz = -(s / N) / (z + eps)^2, dr/dz = -1;
                                               inline: 0 and -1)
    dzq_i = s dz_i m                          dzk_j = s (sum_i dz_i zq_i) / N
    dk_j  = dKV v_j                           dv_j  = dKV^T k_j + (sum_i r_i dO_i) / N

The Triton op is memory-bound and made of token-parallel passes. MALA's linear stages have one or
two heads and up to ~70k tokens (detection inputs), so each reduction splits a slice's tokens over
chunk programs that write partial fp32 sums, added per slice in a fixed order (deterministic, no
atomics; :mod:`attnzoo.kernels.common.linear_reduce`). Forward: reduce ``(KV, m, vbar)``, then one
program per (slice, token tile) writes ``out``; ``(KV, m, vbar)`` are saved (fp32, ``D * Dv + D + Dv``
numbers per slice) for the backward. Backward: a chunked query pass writes ``dq``, ``dzq`` and reduces
``(dKV, dm, dvbar)``; a token pass writes ``dk``, ``dv``, ``dzk``. For 16-bit inputs the products with
the fp32 statistics run as two tf32 dots on a hi / lo split (~fp32 accurate), since MALA's two terms
nearly cancel.

Modules: ``reference`` (plain torch and the input checks), ``kernels`` (``@triton.jit``), ``op``
(checks, dispatch, the ``torch.ops.attnzoo.linear_attention`` op), ``spec`` (its entry in the kernel
registry).
"""

from attnzoo.kernels.linear_attention import spec  # noqa: F401  (registers its KernelSpec)
from attnzoo.kernels.linear_attention.op import linear_attention
from attnzoo.kernels.linear_attention.reference import KINDS, linear_attention_reference

__all__ = ["KINDS", "linear_attention", "linear_attention_reference"]

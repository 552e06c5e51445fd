"""Fourier Kolmogorov-Arnold attention (Fourier-KArAt, Maity et al., arXiv:2503.10632): the learnable
row operator that replaces softmax, ``sigma(A) V = Phi(A) (W^T V)``.

Per (image, head) slice, with ``S = q k^T * scale`` (``N x N``) and a coefficient tensor ``C`` of the
head (``[2G + 1, N, R]``: one ``[N, R]`` matrix per basis function), the op computes the ``[N, R]`` map::

    P[k, p] = sum_q sum_j C[j, q, p] f_j(S[k, q])
    f_0 = silu,  f_{2m-1}(x) = cos(m x),  f_{2m}(x) = sin(m x)   (m = 1 .. G)

i.e. ``Phi_p(S_k,:)``, rank ``R`` (the paper's ``r``), each edge ``q -> p`` a learnable 1-D function of
one score. The caller finishes with ``P @ (W^T V)`` (a small torch matmul), so the ``N x N`` attention
map is never needed. The KAN layout (Fourier coefficients ``a, b``, the per-edge scale and the SiLU
base weight) is folded into ``C`` by :mod:`attnzoo.layers.fourier_karat`; the op sees one tensor.

The Triton kernel streams key tiles and never materialises the ``[N, N, 2G + 1]`` activated tensor:
one ``sin`` / ``cos`` of each score tile, then the harmonics by the rotation recurrence
``cos((m+1)x) = cos(mx) cos(x) - sin(mx) sin(x)``, ``sin((m+1)x) = sin(mx) cos(x) + cos(mx) sin(x)``
(error growing like ``m * eps``; the three-term Chebyshev form saves two multiplies but grows like
``m^2 * eps`` near ``x = 0``), each harmonic tile multiplied into the ``[tile, R]`` accumulator at once.
Backward (two kernels, recomputing the scores): ``dS = sum_j f_j'(S) * (dP C_j^T)``, ``dq = dS k *
scale``, ``dk = dS^T q * scale`` and ``dC_j = f_j(S)^T dP`` (summed over the batch with fp32 atomics:
every image of a head shares ``C``).

Modules: ``reference`` (plain torch), ``kernels`` (``@triton.jit``), ``op`` (checks, dispatch, the
``torch.ops.attnzoo.fourier_karat`` op), ``spec`` (its kernel-registry entry).
"""

from attnzoo.kernels.fourier_karat import spec  # noqa: F401  (registers the KernelSpec)
from attnzoo.kernels.fourier_karat.op import fourier_karat
from attnzoo.kernels.fourier_karat.reference import fourier_basis, fourier_karat_reference

__all__ = ["fourier_basis", "fourier_karat", "fourier_karat_reference"]

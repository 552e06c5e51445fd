"""Fourier-KArAt beyond the kernel battery: the reference is the paper's formula, the harmonic
recurrence at large |S| and larger G, dispatch, and named shape errors."""

import pytest
import torch

from attnzoo.kernels import fourier_karat, fourier_karat_reference, use_kernels
from attnzoo.kernels.fourier_karat.spec import SPEC, make_problem
from tests.helpers.kernel_check import DEVICE, check_against_reference, check_spec


def test_reference_is_the_formula_float64():
    """P[k, p] = sum_q w silu(S) + sum_m a cos(m S) + b sin(m S), written out term by term."""
    gen = torch.Generator().manual_seed(0)
    b, h, n, d, r, g = 2, 2, 6, 4, 3, 2
    q, k = (torch.randn(b, h, n, d, generator=gen, dtype=torch.float64) for _ in range(2))
    coef = torch.randn(h, 2 * g + 1, n, r, generator=gen, dtype=torch.float64)
    s = q @ k.transpose(-1, -2) * 0.5
    want = torch.einsum("bhkq,hqr->bhkr", torch.nn.functional.silu(s), coef[:, 0])
    for m in range(1, g + 1):
        want += torch.einsum("bhkq,hqr->bhkr", torch.cos(m * s), coef[:, 2 * m - 1])
        want += torch.einsum("bhkq,hqr->bhkr", torch.sin(m * s), coef[:, 2 * m])
    torch.testing.assert_close(fourier_karat_reference(q, k, coef, 0.5), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("grid", [6, 11])
def test_recurrence_at_large_scores_and_grid(grid):
    """Scores of |S| ~ 30 and up to 11 harmonics: the rotation recurrence against float64 direct
    evaluation, within the fp32 error the direct evaluation itself makes (cos(m S) of a rounded S)."""
    gen = torch.Generator().manual_seed(grid)
    heads, n, d, r = 2, 37, 16, 12
    q = torch.randn(heads, n, d, generator=gen) * 6.0
    k = torch.randn(heads, n, d, generator=gen)
    coef = torch.randn(heads, 2 * grid + 1, n, r, generator=gen) / (2 * grid * n) ** 0.5
    exact = SPEC.run_reference([t.double() for t in (q, k, coef)], (0.25,))
    assert exact.abs().max() > 0.5
    with torch.no_grad():
        kernel = SPEC.run([t.to(DEVICE) for t in (q, k, coef)], (0.25,)).cpu().double()
        fp32_ref = SPEC.run_reference([q, k, coef], (0.25,)).double()
    ref_err = (fp32_ref - exact).abs().max().item()
    kernel_err = (kernel - exact).abs().max().item()
    assert kernel_err <= max(4 * ref_err, 2e-5), (kernel_err, ref_err)
    check_spec(SPEC, [q, k, coef], (0.25,), torch.float32)


def test_dispatch_and_batched_layout():
    """The public function on [B, H, N, D]: the kernel (forced) equals the reference, values and grads."""
    q4, k4, coef = make_problem(1)[0]

    def kernel(*t):
        with use_kernels("triton"):
            return fourier_karat(*t)

    check_against_reference(kernel, fourier_karat_reference, [q4, k4, coef], torch.float32)
    with use_kernels("torch"):
        torch.testing.assert_close(fourier_karat(q4, k4, coef), fourier_karat_reference(q4, k4, coef))


def test_mixed_dtypes_fp32_coefficients():
    """16-bit q, k with fp32 coefficients (autocast with fp32 parameters): the coef gradient is fp32."""
    q, k, coef = make_problem(3)[0]
    q, k = q.to(DEVICE, torch.float16), k.to(DEVICE, torch.float16)
    coef = coef.to(DEVICE).requires_grad_()
    with use_kernels("triton"):
        p = fourier_karat(q, k, coef)
    assert p.dtype == torch.float16
    p.float().sum().backward()
    assert coef.grad.dtype == torch.float32
    ref = coef.detach().clone().requires_grad_()
    fourier_karat_reference(q.float(), k.float(), ref).sum().backward()
    torch.testing.assert_close(coef.grad, ref.grad, atol=3e-3 * ref.grad.abs().max().item(), rtol=3e-3)


@pytest.mark.parametrize(
    "shapes",
    [((5, 4), (5, 4), (1, 3, 5, 4)), ((1, 2, 5, 4), (1, 2, 5, 4), (2, 4, 5, 4)),
     ((1, 2, 5, 4), (1, 2, 6, 4), (2, 3, 5, 4)), ((1, 2, 5, 4), (1, 2, 5, 4), (3, 3, 5, 4))],
    ids=["no-head-axis", "even-basis", "q-k-differ", "head-count"],
)  # fmt: skip
def test_shape_errors_are_named(shapes):
    q, k, coef = (torch.randn(*s) for s in shapes)
    with pytest.raises(ValueError, match="fourier_karat expects"):
        fourier_karat(q, k, coef)

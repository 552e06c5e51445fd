"""Reusable check of a Triton op against its torch reference: forward and gradients, per dtype.

The reference runs in float32 on the *same* (already rounded) inputs, so the comparison measures
the kernel's error rather than the input dtype's rounding. On CPU the kernels run under
``TRITON_INTERPRET=1`` (see tests/conftest.py); bf16 is GPU-only there, because the interpreter's
``tl.dot`` on bf16 operands is wrong (DESIGN.md, "Kernels").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
import torch

from attnzoo.kernels.registry import DEFAULT_TOLERANCES, KernelSpec

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

DTYPE_IDS = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


def dtype_marks(dtype: torch.dtype) -> list[pytest.MarkDecorator]:
    """bf16 kernel checks run on GPU only: the interpreter's bf16 ``tl.dot`` is wrong."""
    if dtype == torch.bfloat16:
        reason = "bf16 tl.dot is wrong under TRITON_INTERPRET; checked on GPU"
        return [pytest.mark.skipif(not torch.cuda.is_available(), reason=reason)]
    return []


def check_against_reference(
    kernel_fn: Callable[..., torch.Tensor],
    reference_fn: Callable[..., torch.Tensor],
    inputs: Sequence[torch.Tensor],
    dtype: torch.dtype,
    differentiable: Sequence[bool] | None = None,
    seed: int = 0,
    tolerance: tuple[float, float] | None = None,
) -> dict[str, float]:
    """Assert kernel == reference (forward and input gradients) for ``inputs`` cast to ``dtype``,
    within ``tolerance`` (atol, rtol; default: the registry's for ``dtype``).

    Returns the observed max abs errors, so callers can report them.
    """
    atol, rtol = tolerance or DEFAULT_TOLERANCES[dtype]
    differentiable = differentiable or [t.is_floating_point() for t in inputs]
    kernel_in = [
        t.detach().to(DEVICE, dtype).requires_grad_(g) if t.is_floating_point() else t.to(DEVICE)
        for t, g in zip(inputs, differentiable, strict=True)
    ]
    ref_in = [
        t.detach().float().requires_grad_(g) if t.is_floating_point() else t
        for t, g in zip(kernel_in, differentiable, strict=True)
    ]
    out = kernel_fn(*kernel_in)
    ref = reference_fn(*ref_in)
    assert out.dtype == dtype, f"kernel returned {out.dtype} for {dtype} inputs"
    assert out.shape == ref.shape
    errors = {"out": (out.float() - ref).abs().max().item()}
    torch.testing.assert_close(out.float(), ref, atol=atol, rtol=rtol, msg=lambda m: f"forward: {m}")

    gen = torch.Generator(device="cpu").manual_seed(seed)
    grad = torch.randn(ref.shape, generator=gen).to(DEVICE, dtype)
    wrt_k = [t for t in kernel_in if t.requires_grad]
    wrt_r = [t for t in ref_in if t.requires_grad]
    grads_k = torch.autograd.grad(out, wrt_k, grad)
    grads_r = torch.autograd.grad(ref, wrt_r, grad.float())
    for n, (gk, gr) in enumerate(zip(grads_k, grads_r, strict=True)):
        assert gk.dtype == dtype
        scale = max(1.0, gr.abs().max().item())
        errors[f"grad{n}"] = (gk.float() - gr).abs().max().item()
        torch.testing.assert_close(
            gk.float(), gr, atol=atol * scale, rtol=rtol, msg=lambda m, n=n: f"gradient of input {n}: {m}"
        )
    return errors


def check_spec(
    spec: KernelSpec,
    tensors: Sequence[torch.Tensor],
    args: tuple[Any, ...],
    dtype: torch.dtype,
    seed: int = 0,
) -> dict[str, float]:
    """:func:`check_against_reference` for a registered kernel's Triton op on one problem."""
    return check_against_reference(
        lambda *t: spec.run(t, args),
        lambda *t: spec.run_reference(t, args),
        tensors,
        dtype,
        differentiable=spec.differentiable,
        seed=seed,
        tolerance=spec.tolerances[dtype],
    )

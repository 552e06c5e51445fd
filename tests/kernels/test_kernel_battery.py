"""One battery for every registered kernel op (attnzoo.kernels.registry.KERNELS): a new op adds a spec.

Per op: the Triton op vs its reference on random problems (forward and input gradients, per seed and
dtype), and ``torch.library.opcheck`` of its forward op and of its backward op (called with the
arguments autograd really passes it). Under TRITON_INTERPRET on CPU: fp32 / fp16, and the schema,
autograd-registration and fake-tensor checks; on CUDA also bf16 and the AOT-dispatch check.
"""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from attnzoo.kernels.registry import KERNELS, KernelSpec, op_names
from tests.helpers.kernel_check import DEVICE, DTYPE_IDS, check_spec, dtype_marks

SEEDS = range(6)
OPCHECK_SEED = 2
CHECKS = ("test_schema", "test_autograd_registration", "test_faketensor")
GPU_CHECKS = ("test_aot_dispatch_dynamic",) if DEVICE == "cuda" else ()


def _cases():
    for name, spec in KERNELS.items():
        for dtype in spec.dtypes:
            for seed in SEEDS:
                yield pytest.param(
                    name, dtype, seed, id=f"{name}-{DTYPE_IDS[dtype]}-{seed}", marks=dtype_marks(dtype)
                )


@pytest.mark.parametrize(("name", "dtype", "seed"), list(_cases()))
def test_kernel_matches_reference(name, dtype, seed):
    spec = KERNELS[name]
    tensors, args = spec.make_problem(seed)
    check_spec(spec, tensors, args, dtype, seed=seed)


def _on_device(spec: KernelSpec, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """The problem's tensors on DEVICE, the differentiable ones requiring grad."""
    return [t.to(DEVICE).requires_grad_(g) for t, g in zip(tensors, spec.differentiable, strict=True)]


@pytest.mark.parametrize("name", list(KERNELS))
def test_forward_op_opcheck(name):
    """Schema, autograd registration and fake impl (what torch.compile / export rely on)."""
    spec = KERNELS[name]
    tensors, args = spec.make_problem(OPCHECK_SEED)
    inputs = spec.op_inputs(_on_device(spec, tensors), args)
    torch.library.opcheck(spec.forward_op, inputs, test_utils=CHECKS + GPU_CHECKS)


class _FirstCall(TorchDispatchMode):
    """Records the arguments of the first call to ``op``."""

    def __init__(self, op: torch._ops.OpOverload) -> None:
        super().__init__()
        self.op = op
        self.args: tuple | None = None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func == self.op and self.args is None:
            self.args = args
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name", list(KERNELS))
def test_backward_op_opcheck(name):
    """The backward op, on the arguments autograd passes it: schema, autograd registration (with inputs
    requiring grad) and fake impl; AOT dispatch on GPU without grad (a backward op has no backward)."""
    spec = KERNELS[name]
    tensors, args = spec.make_problem(OPCHECK_SEED)
    out = spec.run(_on_device(spec, tensors), args)
    with _FirstCall(spec.backward_op) as call:
        out.backward(torch.randn_like(out))
    assert call.args is not None, f"autograd did not call {spec.backward_op_name}"
    plain = tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in call.args)
    with_grad = tuple(
        a.clone().requires_grad_() if isinstance(a, torch.Tensor) and a.is_floating_point() else a
        for a in plain
    )
    torch.library.opcheck(spec.backward_op, with_grad, test_utils=CHECKS)
    if GPU_CHECKS:
        torch.library.opcheck(spec.backward_op, plain, test_utils=GPU_CHECKS)


def test_registry_holds_every_op():
    """The four ops are registered, each with a reference and a problem that fits it, and every op in
    the ``attnzoo`` torch.library namespace (forward and backward) maps back to a registered kernel."""
    assert {"halo_attention", "bilevel_routing_attention", "infsa_pure", "infsa_linear"} <= set(KERNELS)
    for name, spec in KERNELS.items():
        assert spec.name == name and callable(spec.reference)
        tensors, args = spec.make_problem(0)
        assert len(spec.differentiable) == len(tensors)
        out = spec.run([t.to(DEVICE) for t in tensors], args)
        assert spec.run_reference(tensors, args).shape == out.shape
    in_library = {op for op in torch._C._dispatch_get_all_op_names() if op.startswith("attnzoo::")}
    assert in_library == set(op_names())
    assert op_names()["attnzoo::infsa_linear_backward"] == "infsa_linear"

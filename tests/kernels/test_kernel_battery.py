"""One battery for every registered kernel op (attnzoo.kernels.registry.KERNELS): a new op adds a spec.

Per op: the Triton op vs its reference on random problems (forward and input gradients, per seed and
dtype), and ``torch.library.opcheck`` of its forward op and of its backward op (called with the
arguments autograd really passes it). Under TRITON_INTERPRET on CPU: fp32 / fp16, and the schema,
autograd-registration and fake-tensor checks; on CUDA also bf16 and the AOT-dispatch check.

The public op, under each backend: equal to the reference, and refusing bad inputs with a ValueError
(or TypeError) that names the op and the problem, before anything runs: out-of-range indices (where
the spec declares ``indices``), mixed dtypes (but for the spec's ``own_dtype`` tensors), mixed
devices, one input of the wrong rank, one input whose first dimension disagrees with the rest.
"""

import contextlib
from collections.abc import Iterator

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from attnzoo.kernels import use_kernels
from attnzoo.kernels.common import host
from attnzoo.kernels.registry import KERNELS, KernelSpec, op_names
from tests.helpers.kernel_check import DEVICE, DTYPE_IDS, check_spec, dtype_marks

SEEDS = range(6)
OPCHECK_SEED = 2
PUBLIC_SEED = 4  # linear_attention's seed 4 passes a non-default scale
BACKENDS = ("torch", "triton")
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


class _Passthrough(TorchDispatchMode):
    """Sees every op (as :class:`~attnzoo.zoo.bench.KernelRecorder` does) and runs it unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(func.name())
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name", list(KERNELS))
def test_eager_fast_path_is_the_registered_op(name, monkeypatch):
    """Plain eager calls take ``run_op``'s autograd.Function, calls under a dispatch mode the registered
    op; both give the same output and gradients, bit for bit (the same launchers run)."""
    spec = KERNELS[name]
    tensors, args = spec.make_problem(OPCHECK_SEED)
    applied = []
    eager = host._EAGER[name]

    class Counting(eager):
        @classmethod
        def apply(cls, *a):
            applied.append(name)
            return eager.apply(*a)

    monkeypatch.setitem(host._EAGER, name, Counting)

    def run(mode: TorchDispatchMode | None) -> list[torch.Tensor]:
        inputs = _on_device(spec, tensors)
        with use_kernels("triton"), mode or contextlib.nullcontext():
            out = spec.run_public(inputs, args)
            out.backward(torch.ones_like(out))
        return [out.detach(), *(t.grad for t in inputs if t.requires_grad)]

    fast = run(None)
    assert applied == [name]
    mode = _Passthrough()
    registered = run(mode)
    assert applied == [name] and spec.forward_op_name in mode.ops and spec.backward_op_name in mode.ops
    # Bit for bit: the same launchers run. (KArAt's dC adds atomically; its problem here has two images
    # per head, whose two additions commute exactly.)
    for a, b in zip(fast, registered, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


@pytest.mark.parametrize("name", list(KERNELS))
def test_double_backward_raises(name):
    """The kernels' gradients have no graph of their own: a second backward through them raises (on the
    eager path as through the registered op) rather than silently dropping their terms."""
    spec = KERNELS[name]
    tensors, args = spec.make_problem(OPCHECK_SEED)
    inputs = _on_device(spec, tensors)
    with use_kernels("triton"):
        out = spec.run_public(inputs, args)
    leaves = [t for t in inputs if t.requires_grad]
    grads = torch.autograd.grad(out.square().sum(), leaves, create_graph=True)
    penalty = sum(g.square().sum() for g in grads) + sum(t.square().sum() for t in leaves)
    with pytest.raises(RuntimeError, match="differentiate twice|no autograd formula"):
        penalty.backward()


def test_registry_holds_every_op():
    """The four ops are registered, each with a reference and a problem that fits it, and every op in
    the ``attnzoo`` torch.library namespace (forward and backward) maps back to a registered kernel."""
    assert {"halo_attention", "bilevel_routing_attention", "infsa_pure", "infsa_linear"} <= set(KERNELS)
    for name, spec in KERNELS.items():
        assert spec.name == name and callable(spec.reference) and callable(spec.public)
        tensors, args = spec.make_problem(0)
        assert len(spec.differentiable) == len(tensors)
        assert all(not tensors[i].is_floating_point() for i in spec.indices), "indices must be integer"
        assert all(tensors[i].is_floating_point() for i in spec.own_dtype)
        out = spec.run([t.to(DEVICE) for t in tensors], args)
        assert spec.run_reference(tensors, args).shape == out.shape
    in_library = {op for op in torch._C._dispatch_get_all_op_names() if op.startswith("attnzoo::")}
    assert in_library == set(op_names())
    assert op_names()["attnzoo::infsa_linear_backward"] == "infsa_linear"


def _backend_cases(names: list[str]) -> list:
    return [pytest.param(name, backend, id=f"{name}-{backend}") for name in names for backend in BACKENDS]


def _problem(spec: KernelSpec) -> tuple[list[torch.Tensor], tuple]:
    tensors, args = spec.make_problem(PUBLIC_SEED)
    return [t.to(DEVICE) for t in tensors], args


@pytest.mark.parametrize(("name", "backend"), _backend_cases(list(KERNELS)))
def test_public_op_matches_reference(name, backend):
    """The public op passes every argument on, whichever path it takes (fp32, forward)."""
    spec = KERNELS[name]
    tensors, args = _problem(spec)
    with use_kernels(backend):
        out = spec.run_public(tensors, args)
    want = spec.run_reference([t.cpu() for t in tensors], args)
    torch.testing.assert_close(out.cpu(), want, atol=2e-5, rtol=2e-5)


def _assert_refused(spec: KernelSpec, backend: str, tensors: list, args: tuple, case: str, *words: str):
    """The public op refuses ``tensors`` under ``backend`` with a ValueError / TypeError naming the op
    and every one of ``words``; any other exception propagates."""
    with use_kernels(backend):
        try:
            spec.run_public(tensors, args)
        except (ValueError, TypeError) as err:
            message = str(err)
        else:
            pytest.fail(f"{spec.name} under {backend!r} accepted {case}")
    for word in (spec.name, *words):
        assert word in message, f"{case}: {word!r} is not in the message {message!r}"


def _replaced(tensors: list, position: int, tensor: torch.Tensor) -> list:
    return [tensor if i == position else t for i, t in enumerate(tensors)]


@pytest.mark.parametrize(("name", "backend"), _backend_cases([n for n, s in KERNELS.items() if s.indices]))
def test_out_of_range_indices_are_refused(name, backend):
    """-1 and the bound itself, in the last entry (the Triton path would read outside the tensor or
    drop the entry); the reference refuses them with the same message."""
    spec = KERNELS[name]
    tensors, args = _problem(spec)
    for position, bound in spec.indices.items():
        limit = bound(tensors, args)
        for bad in (-1, limit):
            idx = tensors[position].clone()
            idx.view(-1)[-1] = bad
            case = _replaced(tensors, position, idx)
            words = (str(bad), f"[0, {limit})")
            _assert_refused(spec, backend, case, args, f"index {bad} in input {position}", *words)
            with pytest.raises(ValueError, match=rf"{spec.name}.*{bad}.*\[0, {limit}\)"):
                spec.run_reference(case, args)


@pytest.mark.parametrize("name", [n for n, s in KERNELS.items() if s.indices])
def test_index_checks_leave_compiled_graphs_whole(name):
    """The range check reads values, so it stands aside while torch.compile traces: a fullgraph
    compile of the public op still works (the kernels mask what it would have refused)."""
    spec = KERNELS[name]
    tensors, args = _problem(spec)
    compiled = torch.compile(lambda *t: spec.run_public(t, args), fullgraph=True, backend="eager")
    with use_kernels("torch"):
        torch.testing.assert_close(compiled(*tensors), spec.run_reference(tensors, args))


def _shared_dtype_inputs(spec: KernelSpec, tensors: list) -> Iterator[int]:
    return (i for i, t in enumerate(tensors) if t.is_floating_point() and i not in spec.own_dtype)


@pytest.mark.parametrize(("name", "backend"), _backend_cases(list(KERNELS)))
def test_mixed_dtypes_are_refused(name, backend):
    spec = KERNELS[name]
    tensors, args = _problem(spec)
    for i in _shared_dtype_inputs(spec, tensors):
        other = torch.float64 if tensors[i].dtype != torch.float64 else torch.float32
        case = _replaced(tensors, i, tensors[i].to(other))
        _assert_refused(spec, backend, case, args, f"input {i} in {other}", "dtype", str(other))


@pytest.mark.parametrize(("name", "backend"), _backend_cases(list(KERNELS)))
def test_mixed_devices_are_refused(name, backend):
    spec = KERNELS[name]
    tensors, args = _problem(spec)
    for i, t in enumerate(tensors):
        case = _replaced(tensors, i, t.to("meta"))
        _assert_refused(spec, backend, case, args, f"input {i} on meta", "device", "meta")


@pytest.mark.parametrize(("name", "backend"), _backend_cases(list(KERNELS)))
def test_wrong_ranks_and_shapes_are_refused(name, backend):
    """One input with an extra trailing dimension, or with one fewer entry along its first dimension
    (so it disagrees with the others)."""
    spec = KERNELS[name]
    tensors, args = _problem(spec)
    for i, t in enumerate(tensors):
        _assert_refused(
            spec, backend, _replaced(tensors, i, t.unsqueeze(-1)), args, f"input {i} of rank {t.dim() + 1}"
        )
        short = _replaced(tensors, i, t[:-1])
        _assert_refused(spec, backend, short, args, f"input {i} of shape {tuple(t[:-1].shape)}")

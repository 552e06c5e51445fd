"""The registry of attnzoo's kernel ops: one :class:`KernelSpec` per op, filled as op packages import.

A spec holds what the kernel battery (``tests/kernels/test_kernel_battery.py``) needs to check an op
against its reference -- a random problem, the reference, the public op, the dtypes and tolerances,
which inputs are indices and which may keep their own dtype (to build bad inputs) -- so a new op adds
a spec, not test code. :func:`op_names` maps the ``torch.ops.attnzoo`` names (forward and
backward) back to kernel names, e.g. for ``attnzoo bench``'s kernels column. Importable without
Triton: the specs name their ops, which exist only once Triton has registered them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = [
    "DEFAULT_TOLERANCES",
    "KERNELS",
    "IndexBound",
    "NAMESPACE",
    "KernelSpec",
    "Problem",
    "backward_op_name",
    "forward_op_name",
    "op_names",
    "register",
]

NAMESPACE = "attnzoo"

# (tensors, args): the tensor inputs of one problem and the rest of the reference's arguments.
Problem = tuple[list[torch.Tensor], tuple[Any, ...]]

# The exclusive upper bound of an index tensor's values, from the problem's (tensors, args).
IndexBound = Callable[[Sequence[torch.Tensor], tuple[Any, ...]], int]

# (atol, rtol) of kernel vs the fp32 reference on the same rounded inputs (gradients: atol scaled by
# the gradient's magnitude).
DEFAULT_TOLERANCES: Mapping[torch.dtype, tuple[float, float]] = {
    torch.float32: (2e-5, 2e-5),
    torch.float16: (3e-3, 3e-3),
    torch.bfloat16: (3e-2, 3e-2),
}


def forward_op_name(name: str) -> str:
    """The qualified torch.library name of kernel ``name``'s forward op, ``attnzoo::<name>``."""
    return f"{NAMESPACE}::{name}"


def backward_op_name(name: str) -> str:
    """The qualified name of its backward op, ``attnzoo::<name>_backward``."""
    return f"{NAMESPACE}::{name}_backward"


def _op(qualified: str) -> torch._ops.OpOverload:
    namespace, name = qualified.split("::")
    return getattr(getattr(torch.ops, namespace), name).default


def _all_inputs(tensors: Sequence[torch.Tensor], args: tuple[Any, ...]) -> tuple[Any, ...]:
    return (*tensors, *args)


@dataclass(frozen=True)
class KernelSpec:
    """One kernel op: how to make a problem, run the Triton op on it, and what it must equal.

    ``reference(*tensors, *args)`` is the plain-torch result; the forward op's first output must match
    it, in value and input gradients. ``public(*tensors, *args)`` calls the public op (checks, then
    the dispatch rule), which must equal it under either backend and refuse bad inputs.
    ``op_inputs(tensors, args)`` gives the forward op's arguments (default: ``(*tensors, *args)``).
    ``indices`` maps the position of each integer index tensor to the bound its values stay below;
    ``own_dtype`` lists the floating tensors that may differ in dtype from the rest (all others must
    share one dtype).
    """

    name: str
    make_problem: Callable[[int], Problem]
    reference: Callable[..., torch.Tensor]
    public: Callable[..., torch.Tensor]
    differentiable: tuple[bool, ...]  # which of a problem's tensors take gradients
    op_inputs: Callable[[Sequence[torch.Tensor], tuple[Any, ...]], tuple[Any, ...]] = _all_inputs
    indices: Mapping[int, IndexBound] = field(default_factory=dict)
    own_dtype: tuple[int, ...] = ()
    dtypes: tuple[torch.dtype, ...] = (torch.float32, torch.float16, torch.bfloat16)
    tolerances: Mapping[torch.dtype, tuple[float, float]] = field(
        default_factory=lambda: dict(DEFAULT_TOLERANCES)
    )

    @property
    def forward_op_name(self) -> str:
        return forward_op_name(self.name)

    @property
    def backward_op_name(self) -> str:
        return backward_op_name(self.name)

    @property
    def forward_op(self) -> torch._ops.OpOverload:
        """``torch.ops.attnzoo.<name>.default`` (registered only when Triton is available)."""
        return _op(self.forward_op_name)

    @property
    def backward_op(self) -> torch._ops.OpOverload:
        """``torch.ops.attnzoo.<name>_backward.default``."""
        return _op(self.backward_op_name)

    def run(self, tensors: Sequence[torch.Tensor], args: tuple[Any, ...]) -> torch.Tensor:
        """The Triton op's result (its first output) on one problem."""
        return self.forward_op(*self.op_inputs(tensors, args))[0]

    def run_reference(self, tensors: Sequence[torch.Tensor], args: tuple[Any, ...]) -> torch.Tensor:
        """The reference's result on one problem."""
        return self.reference(*tensors, *args)

    def run_public(self, tensors: Sequence[torch.Tensor], args: tuple[Any, ...]) -> torch.Tensor:
        """The public op's result on one problem (the backend in force decides the path)."""
        return self.public(*tensors, *args)


KERNELS: dict[str, KernelSpec] = {}


def register(spec: KernelSpec) -> KernelSpec:
    """Add ``spec`` to :data:`KERNELS` (called by each op package's ``spec`` module on import)."""
    if spec.name in KERNELS:
        raise ValueError(f"kernel {spec.name!r} is registered twice")
    KERNELS[spec.name] = spec
    return spec


def op_names() -> dict[str, str]:
    """``{qualified torch.ops name: kernel name}`` for the forward and backward op of every kernel,
    e.g. ``{"attnzoo::halo_attention_backward": "halo_attention", ...}``."""
    names = {}
    for spec in KERNELS.values():
        names[spec.forward_op_name] = spec.name
        names[spec.backward_op_name] = spec.name
    return names

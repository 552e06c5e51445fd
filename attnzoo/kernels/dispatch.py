"""One rule that decides, per call, whether an op runs its Triton kernel or its torch reference.

``auto`` (the default) picks Triton when every tensor is on CUDA, Triton imports and nothing is
tracing or exporting the graph; ``torch`` always picks the reference; ``triton`` always picks the
kernel (on CPU that needs ``TRITON_INTERPRET=1``). The environment variable ``ATTNZOO_KERNELS`` sets
the process default and :func:`use_kernels` overrides it for a block of code.

The override is a plain module global, not a ``ContextVar``: ``torch.compile(fullgraph=True)`` reads a
global (and guards on it, so a compiled model recompiles when the backend changes), while Dynamo in
torch 2.11 cannot trace ``ContextVar.get``. So the override holds for the whole process, every thread.
Where ``auto`` runs the reference on CUDA tensors (a shape, dtype or Triton install the kernel does not
support), one warning per op says so: a silent fallback would hide a slow path.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
from collections.abc import Iterator
from typing import Literal

import torch

Backend = Literal["auto", "triton", "torch"]
BACKENDS: tuple[str, ...] = ("auto", "triton", "torch")
ENV_VAR = "ATTNZOO_KERNELS"

_LOG = logging.getLogger(__name__)

# The innermost use_kernels() backend, None outside any.
_forced: str | None = None
# Ops already warned about falling back to the reference on CUDA.
_warned: set[str] = set()


def _check(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown kernel backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    return backend


def kernel_backend() -> str:
    """The backend in force: the innermost :func:`use_kernels`, else ``$ATTNZOO_KERNELS``, else auto."""
    if _forced is not None:
        return _forced
    env = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    try:
        return _check(env)
    except ValueError as err:
        raise ValueError(f"${ENV_VAR}: {err}") from None


@contextlib.contextmanager
def use_kernels(backend: Backend) -> Iterator[None]:
    """Run the enclosed code with ``backend`` ('auto', 'triton' or 'torch')."""
    global _forced
    outer, _forced = _forced, _check(backend)
    try:
        yield
    finally:
        _forced = outer


# Looked up once: a constant is free to read, also inside a torch.compile'd graph.
_TRITON_INSTALLED = importlib.util.find_spec("triton") is not None


def triton_available() -> bool:
    """True when the ``triton`` package can be imported."""
    return _TRITON_INSTALLED


def triton_interpreter() -> bool:
    """True when Triton kernels run on the CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def graph_capture() -> bool:
    """True while ONNX export, jit tracing or torch.export is capturing a graph."""
    if torch.onnx.is_in_onnx_export() or torch.jit.is_tracing():
        return True
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and compiler.is_exporting())


def use_triton(*tensors: torch.Tensor, supported: bool = True, op: str = "an attnzoo op") -> bool:
    """Whether op ``op`` called on ``tensors`` should run its Triton kernel.

    ``supported`` is the op's own verdict on shapes and dtypes; an unsupported call falls back to the
    reference under ``auto`` (with one warning per ``op`` for CUDA tensors) and raises under ``triton``,
    so a forced backend never silently changes.
    """
    backend = kernel_backend()
    if backend == "torch":
        return False
    if backend == "triton":
        if not triton_available():
            raise RuntimeError(f"{ENV_VAR}=triton but the triton package is not installed")
        if not supported:
            raise RuntimeError(
                f"{op}: kernel backend 'triton' was forced for a shape or dtype the kernel does not support"
            )
        if not triton_interpreter() and not all(t.is_cuda for t in tensors):
            raise RuntimeError(
                f"{op}: kernel backend 'triton' needs CUDA tensors (or TRITON_INTERPRET=1 on CPU)"
            )
        return True
    if not all(t.is_cuda for t in tensors) or graph_capture():
        return False
    if supported and triton_available():
        return True
    _warn_fallback(op)
    return False


def _warn_fallback(op: str) -> None:
    """Say once per op that ``auto`` runs the torch reference on CUDA tensors."""
    if torch.compiler.is_compiling() or op in _warned:
        return
    _warned.add(op)
    why = "this shape or dtype" if triton_available() else "a missing triton package"
    _LOG.warning("%s: CUDA tensors run the torch reference, not the Triton kernel, because of %s", op, why)

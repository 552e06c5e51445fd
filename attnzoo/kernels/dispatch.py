"""One rule that decides, per call, whether an op runs its Triton kernel or its torch reference.

``auto`` (the default) picks Triton when every tensor is on CUDA, Triton imports and nothing is
tracing or exporting the graph; ``torch`` always picks the reference; ``triton`` always picks the
kernel (on CPU that needs ``TRITON_INTERPRET=1``). The environment variable ``ATTNZOO_KERNELS`` sets
the process default and :func:`use_kernels` overrides it for a block of code.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib.util
import os
from collections.abc import Iterator
from typing import Literal

import torch

Backend = Literal["auto", "triton", "torch"]
BACKENDS: tuple[str, ...] = ("auto", "triton", "torch")
ENV_VAR = "ATTNZOO_KERNELS"

_override: contextvars.ContextVar[str | None] = contextvars.ContextVar("attnzoo_kernels", default=None)


def _check(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown kernel backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    return backend


def kernel_backend() -> str:
    """The backend in force: the innermost :func:`use_kernels`, else ``$ATTNZOO_KERNELS``, else auto."""
    forced = _override.get()
    if forced is not None:
        return forced
    env = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    try:
        return _check(env)
    except ValueError as err:
        raise ValueError(f"${ENV_VAR}: {err}") from None


@contextlib.contextmanager
def use_kernels(backend: Backend) -> Iterator[None]:
    """Run the enclosed code with ``backend`` ('auto', 'triton' or 'torch')."""
    token = _override.set(_check(backend))
    try:
        yield
    finally:
        _override.reset(token)


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


def use_triton(*tensors: torch.Tensor, supported: bool = True) -> bool:
    """Whether an op called on ``tensors`` should run its Triton kernel.

    ``supported`` is the op's own verdict on shapes and dtypes; an unsupported call falls back to the
    reference under ``auto`` and raises under ``triton``, so a forced backend never silently changes.
    """
    backend = kernel_backend()
    if backend == "torch":
        return False
    if backend == "triton":
        if not triton_available():
            raise RuntimeError(f"{ENV_VAR}=triton but the triton package is not installed")
        if not supported:
            raise RuntimeError(
                "kernel backend 'triton' was forced for a shape or dtype the kernel does not support"
            )
        if not triton_interpreter() and not all(t.is_cuda for t in tensors):
            raise RuntimeError("kernel backend 'triton' needs CUDA tensors (or TRITON_INTERPRET=1 on CPU)")
        return True
    return supported and triton_available() and all(t.is_cuda for t in tensors) and not graph_capture()

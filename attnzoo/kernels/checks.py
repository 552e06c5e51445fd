"""Input checks every kernel op runs before it dispatches, so both backends refuse a bad call with
the same ValueError (naming the op and the offending inputs) instead of the Triton kernels reading
out of bounds or the interpreter failing on mixed types."""

from __future__ import annotations

import torch

from attnzoo.kernels.dispatch import graph_capture

__all__ = ["check_index_range", "check_same_device", "check_same_dtype", "index_checks_enabled"]


def _listing(values: dict[str, object]) -> str:
    return ", ".join(f"{name} {value}" for name, value in values.items())


def check_same_dtype(op: str, **tensors: torch.Tensor) -> None:
    """A ValueError unless the named tensors share one floating dtype (no sync)."""
    dtypes = {name: t.dtype for name, t in tensors.items()}
    if len(set(dtypes.values())) != 1 or not next(iter(tensors.values())).is_floating_point():
        raise ValueError(f"{op} inputs must share one floating dtype, got {_listing(dtypes)}")


def check_same_device(op: str, **tensors: torch.Tensor) -> None:
    """A ValueError unless the named tensors lie on one device (no sync)."""
    devices = {name: str(t.device) for name, t in tensors.items()}
    if len(set(devices.values())) != 1:
        raise ValueError(f"{op} inputs must be on one device, got {_listing(devices)}")


def index_checks_enabled() -> bool:
    """False while a graph is compiled, traced or exported: a range check reads the index's values
    (a device sync and a data-dependent branch), which ``torch.compile(fullgraph=True)`` and export
    cannot hold. The Triton kernels mask out-of-range indices, so a captured graph never reads
    outside its inputs; eager calls (and torch.fx graphs, where the ops are leaf calls) are checked."""
    return not (graph_capture() or torch.compiler.is_compiling())


def check_index_range(op: str, what: str, idx: torch.Tensor, n: int) -> None:
    """A ValueError unless every value of the integer tensor ``idx`` lies in ``[0, n)``: one
    ``aminmax`` and one sync, skipped for an empty index and while a graph is captured (see
    :func:`index_checks_enabled`). ``what`` names the index in the message."""
    if idx.numel() == 0 or not index_checks_enabled():
        return
    lo, hi = torch.stack(torch.aminmax(idx)).tolist()
    if lo < 0 or hi >= n:
        bad = lo if lo < 0 else hi
        raise ValueError(
            f"{op}: {what} {bad} is out of range: valid indices are [0, {n}), got values in [{lo}, {hi}]"
        )

"""Host-side rules shared by the Triton ops: tile sizes, matmul precision, index inversion, and op
registration (which also answers empty problems without launching a kernel) with its eager fast path
(:func:`run_op`)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch.library import CustomOpDef, triton_op

from attnzoo.kernels.common.chunks import next_pow2
from attnzoo.kernels.dispatch import graph_capture
from attnzoo.kernels.registry import backward_op_name, forward_op_name

__all__ = ["FP32_TOKEN_TILE", "define_op", "f32_like", "invert_index", "pow2", "precision", "run_op", "tile"]


def pow2(n: int, floor: int = 16, cap: int | None = None) -> int:
    """The power of two ``>= n`` (``tl.arange`` and ``tl.dot`` need one), at least ``floor`` (the
    smallest ``tl.dot`` operand) and at most ``cap`` when given."""
    size = max(floor, next_pow2(n))
    return size if cap is None else min(cap, size)


def tile(n: int) -> int:
    """A token tile for ``n`` tokens: a power of two in ``[16, 64]``, so registers stay bounded."""
    return pow2(n, cap=64)


# Token tiles of fp32 gradient kernels: IEEE fp32 dots hold their operands in registers, and at 64
# tokens InfSA pure's dQ / dK/dV and linear attention's dQ spilled in every config on sm_90
# (benchmarks/kernel_resources.py, triton 3.8, their families' smallest models: 0.4-146 KB of spill
# stores a thread; benchmarks/RESULTS.md).
FP32_TOKEN_TILE = 32


def f32_like(t: torch.Tensor) -> dict:
    """``torch.empty`` keywords for an fp32 buffer on ``t``'s device (statistics, partial sums)."""
    return dict(device=t.device, dtype=torch.float32)


def precision(t: torch.Tensor) -> str:
    """``tl.dot`` input precision: ``"ieee"`` (exact fp32 products) for fp32 inputs, so fp32 results
    match the references to ~1e-6; ``"tf32"`` for 16-bit inputs, whose error budget is wider."""
    return "ieee" if t.dtype == torch.float32 else "tf32"


# Entries of a selection table that :func:`invert_index` sorts at once (48-64 MiB of sort keys and order).
INVERT_CHUNK_ENTRIES = 1 << 22


def invert_index(
    flat: torch.Tensor, per_row: int, n: int, chunk_entries: int = INVERT_CHUNK_ENTRIES
) -> tuple[torch.Tensor, torch.Tensor]:
    """Invert a selection table, for backward passes that gather instead of scattering (no atomics).

    ``flat`` ``[G, R * per_row]``: per group, the ``per_row`` targets each of R rows selected. Returns
    ``src`` ``[G, R * per_row]`` int32, the selecting row of every entry, grouped by target (ascending;
    a row that selected a target twice appears twice), and ``off`` ``[G, n + 1]`` int32, where target
    ``j``'s group starts. Targets outside ``[0, n)`` sort before offset 0 or after offset ``n``, so no
    target sees them.

    The sort's keys and 64-bit order take 3-4x ``src``'s memory, so groups are sorted a few at a time
    (about ``chunk_entries`` entries; at least one group). For a Sparsifiner layer at 800x1333 (6
    groups of 4200 x 1051 entries; the H200 suite measured 729 MiB for the op's fwd+bwd) this halves
    the peak on CPU: 510 -> 257 MiB above the input.
    """
    groups, entries = flat.shape
    src = torch.empty((groups, entries), device=flat.device, dtype=torch.int32)
    off = torch.empty((groups, n + 1), device=flat.device, dtype=torch.int32)
    bounds = torch.arange(n + 1, device=flat.device, dtype=flat.dtype)
    step = max(1, chunk_entries // max(entries, 1))
    for start in range(0, groups, step):
        keys, order = torch.sort(flat[start : start + step], dim=1, stable=True)
        src[start : start + step] = order.div_(per_row, rounding_mode="floor")
        off[start : start + step] = torch.searchsorted(keys, bounds.expand(keys.shape[0], -1).contiguous())
    return src, off


def define_op(
    name: str,
    *,
    forward: Callable[..., tuple[torch.Tensor, ...]],
    backward: Callable[..., tuple[torch.Tensor, ...]],
    forward_fake: Callable[..., tuple[torch.Tensor, ...]],
    backward_fake: Callable[..., tuple[torch.Tensor, ...]],
    saved: slice = slice(None),
) -> CustomOpDef:
    """Register ``torch.ops.attnzoo.<name>`` and ``<name>_backward`` as Triton ops (both opcheck-able),
    their fake impls, and the autograd formula that links them; returns the forward op.

    The launchers' annotated signatures are the schemas. An empty problem (a batch of 0, no tokens)
    launches no kernel (a zero-size grid is no valid launch): an empty result comes from the forward's
    fake, its gradient is zero for every input. The forward takes the tensors first, then the
    non-tensor arguments (``meta``), and returns the result first, then residuals (outputs without
    gradient). The backward takes ``(grad of the result, *tensors, *outputs[saved], *meta)``
    and returns the gradients of the leading tensors; the remaining inputs get ``None``.
    """
    forward, backward = _empty_forward(forward, forward_fake), _empty_backward(backward, backward_fake)
    fwd = triton_op(forward_op_name(name), forward, mutates_args=())
    bwd = triton_op(backward_op_name(name), backward, mutates_args=())
    _EAGER[name] = _eager_function(name, forward, backward, saved)
    fwd.register_fake(forward_fake)
    bwd.register_fake(backward_fake)

    def setup_context(ctx, inputs, output) -> None:
        _save(ctx, inputs, output, saved)

    def grad_fn(ctx, grad_out: torch.Tensor, *_residual_grads: torch.Tensor):
        return _input_grads(bwd, ctx, grad_out)

    fwd.register_autograd(grad_fn, setup_context=setup_context)
    return fwd


def _save(ctx, inputs: tuple, outputs: tuple, saved: slice) -> None:
    """What the backward needs: the input tensors, ``outputs[saved]``, the non-tensor inputs."""
    ctx.save_for_backward(*(x for x in inputs if isinstance(x, torch.Tensor)), *outputs[saved])
    ctx.meta = tuple(x for x in inputs if not isinstance(x, torch.Tensor))
    ctx.n_inputs = len(inputs)


def _input_grads(backward: Callable[..., tuple], ctx, grad_out: torch.Tensor) -> tuple:
    """The leading tensors' gradients from ``backward``; ``None`` for the remaining inputs."""
    grads = backward(grad_out, *ctx.saved_tensors, *ctx.meta)
    return (*grads, *(None,) * (ctx.n_inputs - len(grads)))


# Op name -> the autograd.Function that :func:`run_op` calls in plain eager code.
_EAGER: dict[str, type[torch.autograd.Function]] = {}


def run_op(name: str, *args: object) -> tuple[torch.Tensor, ...]:
    """Op ``name``'s forward, ``torch.ops.attnzoo.<name>(*args)``, the same math either way.

    Plain eager calls (no torch.compile, export or tracing, no dispatch or function mode, no functorch
    transform, plain tensors) skip the registered op's dispatch for an ``autograd.Function`` over the
    same launchers. The dispatch costs more host time than the launchers themselves, and at small
    shapes the ops are bound by host time. Measured on a 2-core CPU with the kernel launches stubbed
    out: the registered op's forward 81 us against 35 us for the Function; the public ``infsa_pure``
    at 8x3x197x64, forward 96-104 -> 79-85 us, forward + backward 947-965 -> 793-828 us (CPU autograd
    work included). Everything else (compiled graphs, ``opcheck``,
    :class:`~attnzoo.zoo.bench.KernelRecorder`, fake tensors) meets the registered op; the kernel
    battery checks that both paths give the same bits.
    """
    if _plain_eager(args):
        return _EAGER[name].apply(*args)
    return getattr(torch.ops.attnzoo, name)(*args)


def _plain_eager(args: tuple) -> bool:
    if (
        torch.compiler.is_compiling()
        or graph_capture()
        or torch._C._is_torch_function_mode_enabled()
        or torch._C._len_torch_dispatch_stack() > 0
        or torch._C._functorch.peek_interpreter_stack() is not None
    ):
        return False
    # Parameters too (their __torch_function__ is disabled): contmix takes its bias tables as such.
    return all(type(a) in (torch.Tensor, torch.nn.Parameter) for a in args if isinstance(a, torch.Tensor))


def _eager_function(
    name: str, forward: Callable[..., tuple], backward: Callable[..., tuple], saved: slice
) -> type[torch.autograd.Function]:
    """An ``autograd.Function`` with the registered op's autograd formula (see :func:`define_op`)."""

    def fwd(ctx, *args):
        outputs = forward(*args)
        ctx.mark_non_differentiable(*outputs[1:])
        _save(ctx, args, outputs, saved)
        return outputs

    def bwd(ctx, grad_out, *_residual_grads):
        return _input_grads(backward, ctx, grad_out)

    # once_differentiable: the launchers' gradients have no graph, so a double backward must raise (as
    # it does through the registered op, which has no backward of its backward), not drop terms.
    backward_fn = torch.autograd.function.once_differentiable(bwd)
    body = {"forward": staticmethod(fwd), "backward": staticmethod(backward_fn), "__doc__": f"Eager {name}."}
    return type(f"Eager_{name}", (torch.autograd.Function,), body)


def _empty_forward(forward: Callable[..., tuple], fake: Callable[..., tuple]) -> Callable[..., tuple]:
    """``forward``, except where an input is empty and so is the result (the first output): then
    ``fake``'s outputs, residuals zeroed (only the backward reads them, and an empty result's backward
    does not). The fake runs only after an empty input, so a full call allocates nothing twice."""

    @functools.wraps(forward)  # keeps the annotated signature, which is the op's schema
    def run(*args, **kwargs):
        if any(isinstance(a, torch.Tensor) and a.numel() == 0 for a in (*args, *kwargs.values())):
            outputs = fake(*args, **kwargs)
            if outputs[0].numel() == 0:
                return tuple(o.zero_() for o in outputs)
        return forward(*args, **kwargs)

    return run


def _empty_backward(backward: Callable[..., tuple], fake: Callable[..., tuple]) -> Callable[..., tuple]:
    """``backward``, except for an empty result's gradient (the first argument): then every input's
    gradient is zero, also of inputs shared by the batch (weights, tables), with ``fake``'s shapes."""

    @functools.wraps(backward)
    def run(grad_out, *args, **kwargs):
        if grad_out.numel() == 0:
            return tuple(g.zero_() for g in fake(grad_out, *args, **kwargs))
        return backward(grad_out, *args, **kwargs)

    return run

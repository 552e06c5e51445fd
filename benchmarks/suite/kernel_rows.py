"""Kernel rows: each op at the inputs its family's smallest model really passes it, against its anchor."""

from __future__ import annotations

import contextlib
import copy
import inspect
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import bench_bilevel_routing
import timm
import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode

import attnzoo
import attnzoo.kernels
from attnzoo.kernels import use_kernels, use_triton
from attnzoo.layers import HaloAttention
from suite.records import rnd, why
from suite.settings import DTYPE_NAMES, Settings
from suite.timing import free_memory, gpu_time, measure

# Op -> the model whose layers give its shapes: the smallest of the family that runs it (HaloNet: the
# model timm's HaloAttn anchor comes from). An op missing here is recorded as skipped.
OP_MODELS = {
    "halo_attention": "az_halonet26t",
    "bilevel_routing_attention": "biformer_tiny",
    "infsa_pure": "infvit_pure_tiny_patch16_224",
    "infsa_linear": "infvit_linear_tiny_patch16_224",
    "topk_attention": "sparsifiner_deit_t",
    "linear_attention": "inline_deit_tiny",
    "contmix": "overlock_xt",
    "fourier_karat": "karat_vit_tiny_g1u",
}


OP_ORDER = ("halo_attention", "bilevel_routing_attention", "infsa_pure", "infsa_linear")


@dataclass
class Case:
    """One distinct call of an op inside a model: its inputs (captured) and what runs it."""

    op: str
    model: str
    size: str
    args: tuple
    kwargs: dict
    calls: int
    layer: torch.nn.Module | None = None  # halo attention: the whole layer (timm's anchor is a layer)
    shape: str = ""


def _tensors(obj: Any) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [t for x in obj for t in _tensors(x)]
    if isinstance(obj, dict):
        return [t for x in obj.values() for t in _tensors(x)]
    return []


def _key(obj: Any) -> str:
    """A call's signature: tensor shapes and dtypes, other arguments by value."""
    if isinstance(obj, torch.Tensor):
        return f"T{tuple(obj.shape)}{obj.dtype}"
    if isinstance(obj, (tuple, list)):
        return "(" + ",".join(_key(x) for x in obj) + ")"
    if isinstance(obj, dict):
        return "{" + ",".join(f"{k}={_key(v)}" for k, v in sorted(obj.items())) + "}"
    return repr(obj)


def _map(obj: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, tuple):
        return tuple(_map(x, fn) for x in obj)
    if isinstance(obj, list):
        return [_map(x, fn) for x in obj]
    if isinstance(obj, dict):
        return {k: _map(v, fn) for k, v in obj.items()}
    return obj


def _freeze(obj: Any) -> Any:
    return _map(obj, lambda t: t.detach().clone())


@contextlib.contextmanager
def swapped(fn: Callable, replacement: Callable) -> Iterator[None]:
    """``replacement`` wherever an attnzoo module holds ``fn`` (modules import ops and rules by name)."""
    holders = [
        (mod, attr)
        for name, mod in list(sys.modules.items())
        if name.startswith("attnzoo") and mod is not None
        for attr, value in list(vars(mod).items())
        if value is fn
    ]
    for mod, attr in holders:
        setattr(mod, attr, replacement)
    try:
        yield
    finally:
        for mod, attr in holders:
            setattr(mod, attr, fn)


def recording(fn: Callable, calls: dict[str, list]) -> contextlib.AbstractContextManager[None]:
    """Wrap ``fn`` wherever an attnzoo module holds it, recording each distinct call's inputs."""

    def recorder(*args, **kwargs):
        key = _key((args, kwargs))
        if key not in calls:
            calls[key] = [_freeze(args), _freeze(kwargs), 0]
        calls[key][2] += 1
        return fn(*args, **kwargs)

    return swapped(fn, recorder)


def op_size(op: str, size: tuple[int, int], multiple: int) -> tuple[int, int]:
    """The input ``op``'s model runs at: ``size``, except for halo attention: the nearest multiple of
    ``multiple`` per side (at least one), as timm's HaloAttn asserts whole blocks; halonet26t's last
    attention runs at stride 32 with 8x8 blocks, so 256: 224 -> 256, 800x1333 -> 768x1280."""
    if op != "halo_attention":
        return size
    return tuple(max(1, round(side / multiple)) * multiple for side in size)


def capture(
    op: str, size: tuple[int, int], batch: int, device: torch.device, model: str | None = None
) -> list[Case]:
    """The distinct calls of ``op`` in one forward of ``model`` (default: its family's, :data:`OP_MODELS`)
    at ``size`` (torch path, fp32)."""
    name = model or OP_MODELS[op]
    torch.manual_seed(0)
    model = timm.create_model(name).to(device).eval()
    x = torch.randn(batch, 3, *size, device=device)
    label = "x".join(map(str, size)) if size[0] != size[1] else str(size[0])
    calls: dict[str, list] = {}
    layers: dict[str, torch.nn.Module] = {}
    if op == "halo_attention":

        def hook(module, inputs):
            config = (module.dim, module.num_heads, module.block_stride, module.block_size, module.halo_size)
            key = _key((inputs, config, type(module.pool).__name__))
            layers.setdefault(key, module)
            calls.setdefault(key, [_freeze(inputs), {}, 0])[2] += 1

        handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, HaloAttention)]
        with torch.no_grad(), use_kernels("torch"):
            model(x)
        for h in handles:
            h.remove()
    else:
        with torch.no_grad(), use_kernels("torch"), recording(getattr(attnzoo.kernels, op), calls):
            model(x)
    cases = []
    for key, (args, kwargs, count) in calls.items():
        shape = ", ".join("x".join(map(str, t.shape)) or "scalar" for t in _tensors((args, kwargs)))
        layer = copy.deepcopy(layers[key]) if key in layers else None
        cases.append(Case(op, name, label, args, kwargs, count, layer, shape))
    return cases


def redrawn(case: Case, batch: int, heads: int, tokens: int) -> Case:
    """``case`` with its ``[B, H, N, D]`` tensors drawn again at another batch, head count and token
    count (other arguments kept): a sequence length no model of the zoo reaches at its own inputs."""

    def redraw(t: torch.Tensor) -> torch.Tensor:
        if t.dim() != 4:
            return t
        return torch.randn(batch, heads, tokens, t.shape[-1], device=t.device, dtype=t.dtype)

    args, kwargs = _map(case.args, redraw), _map(case.kwargs, redraw)
    shape = ", ".join("x".join(map(str, t.shape)) or "scalar" for t in _tensors((args, kwargs)))
    model, label = f"{case.model} (q, k, v redrawn)", f"{tokens} tokens"
    return replace(case, model=model, size=label, args=args, kwargs=kwargs, calls=1, shape=shape)


def _named(case: Case, args: tuple, kwargs: dict) -> dict[str, Any]:
    return inspect.signature(getattr(attnzoo.kernels, case.op)).bind(*args, **kwargs).arguments


def _sdpa(case: Case, args: tuple, kwargs: dict) -> torch.Tensor:
    """Softmax attention (SDPA) over the op's own q, k, v (all keys): the op it replaces or prunes."""
    a = _named(case, args, kwargs)
    return F.scaled_dot_product_attention(a["q"], a["k"], a["v"], scale=a.get("scale"))


def _gather(case: Case, args: tuple, kwargs: dict) -> torch.Tensor:
    """The official gather formulation on the op's inputs (the op's own options, such as
    ``check_range``, are not its)."""
    a = _named(case, args, kwargs)
    return bench_bilevel_routing.run_gather(a["q"], a["k"], a["v"], a["idx"], a["region_size"], a["scale"])


def _timm_halo(layer: HaloAttention) -> torch.nn.Module:
    """timm's HaloAttn configured as ``layer``, holding its weights (strict load)."""
    from timm.layers.halo_attn import HaloAttn

    ref = HaloAttn(
        layer.dim,
        layer.num_heads * layer.dim_head_v,
        stride=2 if isinstance(layer.pool, torch.nn.AvgPool2d) else layer.block_stride,
        num_heads=layer.num_heads,
        dim_head=layer.dim_head_qk,
        block_size=layer.block_size,
        halo_size=layer.halo_size,
        qkv_bias=layer.q.bias is not None,
        avg_down=isinstance(layer.pool, torch.nn.AvgPool2d),
        scale_pos_embed=layer.scale_pos_embed,
    )
    ref.load_state_dict(layer.state_dict())
    return ref


# op -> (anchor name, anchor(case, args, kwargs) -> output); halo attention's anchor is a layer
ANCHORS: dict[str, tuple[str, Callable]] = {
    "bilevel_routing_attention": ("official gather (bra_legacy)", _gather),
    "infsa_pure": ("sdpa softmax, same q/k/v", _sdpa),
    "infsa_linear": ("sdpa softmax, same q/k/v", _sdpa),
    "topk_attention": ("sdpa dense (all keys)", _sdpa),
    "linear_attention": ("sdpa softmax, same q/k/v", _sdpa),
}


@dataclass
class Prepared:
    """One case in one dtype: fresh leaf inputs and the callables (ours, anchor) on them."""

    inputs: list[torch.Tensor]
    ours: Callable[[], torch.Tensor]
    anchor: Callable[[], torch.Tensor] | None
    anchor_name: str | None
    anchor_error: str | None = None


def _flex(case: Case, args: tuple) -> Callable[[], torch.Tensor]:
    """FlexAttention with a block mask from the routing table (compiled): bi-level routing's other anchor."""
    q, k, v, idx, region, scale = args
    flex = bench_bilevel_routing.make_flex(q, idx, region, compiled=True)
    return lambda: flex(q, k, v, idx, region, scale)


def prepare(case: Case, dtype: torch.dtype, backward: bool, flex: bool = False) -> Prepared:
    def cast(t: torch.Tensor) -> torch.Tensor:
        # detach(): a new leaf even where .to() is a no-op (fp32), so the captured case is not marked
        # requires_grad for the tasks that reuse it (a bf16 copy of it would then be a non-leaf)
        return t.detach().to(dtype).requires_grad_(backward) if t.is_floating_point() else t

    args, kwargs = _map(case.args, cast), _map(case.kwargs, cast)
    inputs = [t for t in _tensors((args, kwargs)) if t.is_floating_point()]
    if case.layer is not None:
        ours_layer = copy.deepcopy(case.layer).to(dtype).train(backward)
        try:
            ref = _timm_halo(case.layer).to(args[0].device, dtype).train(backward)
            anchor, error = (lambda: ref(*args)), None
        except Exception as err:  # noqa: BLE001  (recorded in the row)
            anchor, error = None, f"anchor error: {why(err)}"
        return Prepared(inputs, lambda: ours_layer(*args), anchor, "timm HaloAttn (same weights)", error)
    fn = getattr(attnzoo.kernels, case.op)
    if flex:
        return Prepared(inputs, lambda: fn(*args, **kwargs), _flex(case, args), "flex_attention (compiled)")
    name, run = ANCHORS.get(case.op, (None, None))
    anchor = (lambda: run(case, args, kwargs)) if run else None
    return Prepared(inputs, lambda: fn(*args, **kwargs), anchor, name)


def step_fn(
    fn: Callable[[], torch.Tensor], backward: bool, inputs: Sequence[torch.Tensor] = ()
) -> Callable[[], None]:
    """One call of ``fn`` (fwd: under no_grad), and for fwd+bwd its backward with a fixed grad (made on
    the first call), after which ``inputs`` drop their ``.grad`` (no accumulation kernels timed)."""
    grads: list[torch.Tensor] = []

    def step() -> None:
        if not backward:
            with torch.no_grad():
                fn()
            return
        out = fn()
        if not grads:
            grads.append(torch.randn_like(out))
        out.backward(grads[0])
        for t in inputs:
            t.grad = None

    return step


def count_flops(prep: Prepared, backward: bool) -> int | None:
    """FLOPs of one call on the torch reference path (flop_counter: matmul, conv, SDPA), or None.
    Counted on fake tensors (shapes, no data): the reference materialises what the kernels never do,
    e.g. InfSA's N x N maps, ~75 GiB for fwd+bwd at 16385 tokens."""
    try:
        fake = FakeTensorMode(allow_non_fake_inputs=True)
        with use_kernels("torch"), fake, FlopCounterMode(display=False) as counter:
            step_fn(prep.ours, backward, prep.inputs)()
        return int(counter.get_total_flops()) or None
    except Exception:  # noqa: BLE001  (a reference fake tensors cannot run): no FLOP figure
        return None


def traffic_bytes(prep: Prepared, backward: bool) -> int:
    """Minimum traffic: fwd reads the inputs and writes the output; bwd reads grad-out and the inputs
    and writes grad-inputs."""
    with torch.no_grad():
        out = prep.ours()
    ins = sum(t.numel() * t.element_size() for t in prep.inputs)
    out_bytes = out.numel() * out.element_size()
    return ins + out_bytes + (out_bytes + 2 * ins if backward else 0)


def kernel_rows(
    case: Case, dtype: torch.dtype, device: torch.device, s: Settings, peaks, flex: bool = False
) -> Iterator[dict]:
    """fwd and fwd+bwd rows of one case in one dtype (``flex``: against FlexAttention)."""
    for backward in (False, True):
        prep = prepare(case, dtype, backward, flex)
        with use_kernels("auto"):
            backend = "triton" if use_triton(*prep.inputs) else "torch (reference)"
            step = step_fn(prep.ours, backward, prep.inputs)
            ours_ms, ours_mib = measure(step, device, s.iters, s.warmup)
            ours_gpu, ours_launches, gpu_note = gpu_time(step, device, s.iters)
        row = {
            "kind": "kernel",
            "op": case.op,
            "model": case.model,
            "input": case.size,
            "shape": case.shape,
            "calls_per_forward": case.calls,
            "dtype": DTYPE_NAMES[dtype],
            "pass": "fwd+bwd" if backward else "fwd",
            "backend": backend,
            "ours_ms": rnd(ours_ms, 4),
            "ours_mib": rnd(ours_mib, 1),
            "ours_gpu_ms": rnd(ours_gpu, 4),
            "ours_launches": rnd(ours_launches, 1),
            "anchor": prep.anchor_name,
            "anchor_ms": None,
            "anchor_mib": None,
            "anchor_gpu_ms": None,
            "anchor_launches": None,
            "speedup": None,
            "gpu_speedup": None,
            "gpu_time_error": gpu_note,
            "status": "ok" if prep.anchor else (prep.anchor_error or "no anchor"),
        }
        if prep.anchor is not None:
            try:
                step = step_fn(prep.anchor, backward, prep.inputs)
                anchor_ms, anchor_mib = measure(step, device, s.iters, s.warmup)
                row.update(anchor_ms=rnd(anchor_ms, 4), anchor_mib=rnd(anchor_mib, 1))
                row["speedup"] = rnd(anchor_ms / ours_ms)
                anchor_gpu, anchor_launches, note = gpu_time(step, device, s.iters)
                row.update(anchor_gpu_ms=rnd(anchor_gpu, 4), anchor_launches=rnd(anchor_launches, 1))
                row["gpu_time_error"] = row["gpu_time_error"] or note
                if ours_gpu and anchor_gpu:
                    row["gpu_speedup"] = rnd(anchor_gpu / ours_gpu)
            except torch.OutOfMemoryError:
                row["status"] = "anchor out of memory"
            except Exception as err:  # noqa: BLE001  (e.g. timm's HaloAttn asserts block multiples)
                row["status"] = f"anchor error: {why(err)}"
            free_memory(device)
        row.update(throughput(prep, backward, ours_gpu or ours_ms, dtype, peaks))
        yield row
        del prep
        free_memory(device)


def throughput(prep: Prepared, backward: bool, ms: float, dtype: torch.dtype, peaks) -> dict[str, Any]:
    flops, nbytes = count_flops(prep, backward), traffic_bytes(prep, backward)
    tflops = flops / ms / 1e9 if flops else None
    gbps = nbytes / ms / 1e6
    peak_tf = peaks and peaks[DTYPE_NAMES[dtype]]
    peak_gb = peaks and peaks["hbm_tbs"] * 1e3
    return {
        "flops": flops,
        "bytes": nbytes,
        "tflops": rnd(tflops),
        "pct_peak_tflops": rnd(100 * tflops / peak_tf, 2) if tflops and peak_tf else None,
        "gbps": rnd(gbps, 1),
        "pct_peak_gbps": rnd(100 * gbps / peak_gb, 2) if peak_gb else None,
    }

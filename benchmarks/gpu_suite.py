"""One-command GPU benchmark suite: attnzoo's kernels and models against their anchors, within a budget.

    python benchmarks/gpu_suite.py [--out benchmarks/results] [--budget-s 240] [--quick]

Order (most important first; the run stops cleanly when the budget is spent, and every task it did not
start or finish is recorded as skipped):

1. models, eager: training images/s (bf16 autocast, SGD step, batch 64 at 224, channels_last for the
   conv nets) and inference images/s (bf16 autocast), peak memory, each next to its anchor with the
   same weights (loaded through ``attnzoo.convert_official``): timm ``halonet26t`` / ``convit_tiny``,
   the official BiFormer and Infinite Self-Attention code (``benchmarks/anchors.py``);
2. kernels at 224, then 3. at 800x1333: every registered op at the inputs it really receives in the
   smallest model of its family (:data:`OP_MODELS`; captured by wrapping the public op, or for halo
   attention the whole layer, during one forward, batch 8 / 2), bf16 then fp32, forward and
   forward+backward, against an anchor where one computes the comparable op (timm ``HaloAttn`` with
   the same weights; the official BiFormer gather formulation; SDPA for InfSA / linear / top-k
   attention). HaloNet runs at the nearest multiple of 256 (224 -> 256, 800x1333 -> 768x1280), the
   sizes at which timm's HaloAttn (whole blocks only) runs;
4. torch.compile'd models (ours and anchor), then FlexAttention (compiled) for bi-level routing.

Numbers: kernel times are medians over CUDA events of one synchronised call after two warm-up calls
(Triton compile and autotune happen there): wall time, host work between launches included, which
dominates at small shapes; GPU ms is the summed duration of the device activities (kernels, copies,
memsets) one call runs, from the profiler, and TFLOP/s and GB/s are taken from it (from the wall time
where there is none: the CPU); kernel memory is the peak above what was allocated before the timed calls;
model memory is the peak of the timed steps (weights, optimiser state, activations). FLOPs are
``torch.utils.flop_counter`` counts (matmul / conv / SDPA) of the same call on the torch reference
path (halo attention: the whole layer, projections included); bytes are the minimum traffic (fwd:
inputs + output; fwd+bwd adds grad-out, inputs and grad-inputs). Peaks come from :data:`PEAKS` by
device name (unknown GPU: null). fp32 rows use the non-tensor-core fp32 peak: the kernels use IEEE
fp32 dots and torch's matmul precision is 'highest'.

Warm-up (``--warm-workers N``): before the timed run, N processes run every task once, compiling
every autotune config of every kernel (``ATTNZOO_AUTOTUNE=compile``: nothing timed or cached as a
choice) and the torch.compile rows' graphs, into the on-disk caches the timed run then reads.

Results: ``<out>/<gpu-name-slug>-<YYYY-MM-DD>.json``, rewritten after every row; the Markdown table
is printed at the end (``--table JSON ...`` prints it again from saved files). ``--quick``: tiny
shapes and one iteration, so it runs on the CPU too (the ops then run their torch reference: each row
names its backend); compile rows are skipped there.
"""

from __future__ import annotations

import time

_T0 = time.monotonic()  # the budget counts from here (before the heavy imports)

import argparse  # noqa: E402
import contextlib  # noqa: E402
import copy  # noqa: E402
import datetime  # noqa: E402
import functools  # noqa: E402
import gc  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from dataclasses import dataclass, replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import timm  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import attnzoo  # noqa: E402
import attnzoo.kernels  # noqa: E402
from attnzoo.kernels import use_kernels, use_triton  # noqa: E402
from attnzoo.kernels.registry import KERNELS  # noqa: E402
from attnzoo.layers import HaloAttention  # noqa: E402
from attnzoo.zoo.bench import KernelRecorder  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import anchors  # noqa: E402
import bench_bilevel_routing  # noqa: E402

BF16, FP32 = torch.bfloat16, torch.float32
DTYPE_NAMES = {BF16: "bf16", FP32: "fp32"}

# Dense peaks by device name (first match): TFLOP/s for bf16 and tf32 tensor cores and non-tensor fp32,
# and HBM TB/s (NVIDIA data sheets).
PEAKS: tuple[tuple[str, dict[str, float]], ...] = (
    ("H200", {"bf16": 989.0, "tf32": 494.0, "fp32": 67.0, "hbm_tbs": 4.8}),
    ("H100 80GB HBM3", {"bf16": 989.0, "tf32": 494.0, "fp32": 67.0, "hbm_tbs": 3.35}),  # SXM
    ("H100 PCIe", {"bf16": 756.0, "tf32": 378.0, "fp32": 51.0, "hbm_tbs": 2.0}),
)

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


@dataclass(frozen=True)
class Settings:
    """Sizes and iteration counts: the full GPU run, or ``--quick``'s tiny one."""

    sizes: tuple[tuple[str, tuple[int, int], int], ...]  # (label, (H, W), batch) for kernel shapes
    halo_multiple: int  # halo attention's input: the nearest multiple (see op_size)
    model_batch: int
    iters: int
    warmup: int
    compile: bool
    split_cases: int = 0  # > 0: a task per case of each kernel task (its first split_cases cases)


FULL = Settings((("224", (224, 224), 8), ("800x1333", (800, 1333), 2)), 256, 64, 10, 2, True)
QUICK = Settings((("32", (32, 32), 1), ("40x56", (40, 56), 1)), 128, 1, 1, 1, False)
# A warm-up worker's run: every call once, to compile it; an op's shapes are separate tasks (no op has
# more than 4), so that several workers compile them at once.
WARM = replace(FULL, iters=1, warmup=1, split_cases=4)


# ----------------------------------------------------------------------------- budget and output
class BudgetSpent(BaseException):
    """Raised by the timer signal when the budget runs out mid-task (a BaseException, so that no
    ``except Exception`` -- ours, or torch.compile's fallbacks -- swallows it)."""


class Budget:
    """Seconds left until ``budget - reserve`` after process start (the reserve covers the exit)."""

    def __init__(self, seconds: float, reserve: float) -> None:
        self.deadline = _T0 + seconds - reserve

    def left(self) -> float:
        return self.deadline - time.monotonic()


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`BudgetSpent` in the enclosed code after ``seconds`` (SIGALRM, main thread)."""

    def fire(signum, frame):
        raise BudgetSpent

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Results:
    """The JSON file: run facts plus every row, rewritten (atomically) after each row."""

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path, self.meta, self.rows = path, meta, []
        self.write()

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.write()

    def write(self) -> None:
        self.meta["elapsed_s"] = round(time.monotonic() - _T0, 1)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"meta": self.meta, "rows": self.rows}, indent=1))
        os.replace(tmp, self.path)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def device_peaks(device: torch.device) -> dict[str, float] | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peaks for key, peaks in PEAKS if key in name), None)


def run_meta(device: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    commits = {
        repo: (anchors.ANCHORS / repo / "COMMIT").read_text().strip()
        for repo in (anchors.BIFORMER, anchors.INFSA)
        if (anchors.ANCHORS / repo / "COMMIT").is_file()
    }
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "triton": triton_version,
        "timm": timm.__version__,
        "cuda": torch.version.cuda,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "budget_s": args.budget_s,
        "quick": args.quick,
        "peaks": device_peaks(device),
        "anchor_commits": commits,
        "method": __doc__.split("Numbers: ")[1].split("\n\nResults")[0].replace("\n", " "),
    }


# ----------------------------------------------------------------------------- timing
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    fn: Callable[[], Any], device: torch.device, iters: int, warmup: int
) -> tuple[float, float | None]:
    """(median ms per call, peak MiB above the memory allocated before the timed calls; None on CPU)."""
    for _ in range(warmup):
        fn()
    sync(device)
    cuda = device.type == "cuda"
    if cuda:
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(iters):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1e3)
    peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20 if cuda else None
    return sorted(times)[len(times) // 2], peak


def gpu_time(
    fn: Callable[[], Any], device: torch.device, iters: int
) -> tuple[float | None, float | None, str | None]:
    """(GPU ms per call, device activities per call: kernels, copies, memsets; why not, if not), from
    the profiler's device events: what one call costs the GPU, without the host time between its
    launches that CUDA-event timing of a synchronised call also counts (most of it at small shapes).
    None off CUDA, or where the profiler fails (an extra column: the row keeps its other numbers).
    Run after :func:`measure`, so nothing compiles here."""
    if device.type != "cuda":
        return None, None, None
    activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    try:
        with torch.profiler.profile(activities=activities) as prof:
            for _ in range(iters):
                fn()
            sync(device)
        events = [
            e
            for e in prof.events()
            if e.device_type == torch.autograd.DeviceType.CUDA and not getattr(e, "is_user_annotation", False)
        ]
    except Exception as err:  # noqa: BLE001  (recorded in the row)
        return None, None, f"profiler: {why(err)}"
    if not events:
        return None, None, "profiler: no device events"
    return sum(e.self_device_time_total for e in events) / iters / 1e3, len(events) / iters, None


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def rnd(x: float | None, digits: int = 3) -> float | None:
    return None if x is None else round(x, digits)


def why(err: BaseException) -> str:
    """An exception in one short line (bare asserts have no message: their source line is named)."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    if not text and err.__traceback__ is not None:
        frame = err.__traceback__
        while frame.tb_next is not None:
            frame = frame.tb_next
        text = f"at {Path(frame.tb_frame.f_code.co_filename).name}:{frame.tb_lineno}"
    return f"{type(err).__name__}: {text}"[:200]


# ----------------------------------------------------------------------------- kernel cases
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
def recording(fn: Callable, calls: dict[str, list]) -> Iterator[None]:
    """Wrap ``fn`` wherever an attnzoo module holds it, recording each distinct call's inputs."""

    def recorder(*args, **kwargs):
        key = _key((args, kwargs))
        if key not in calls:
            calls[key] = [_freeze(args), _freeze(kwargs), 0]
        calls[key][2] += 1
        return fn(*args, **kwargs)

    holders = [
        (mod, attr)
        for name, mod in list(sys.modules.items())
        if name.startswith("attnzoo") and mod is not None
        for attr, value in list(vars(mod).items())
        if value is fn
    ]
    for mod, attr in holders:
        setattr(mod, attr, recorder)
    try:
        yield
    finally:
        for mod, attr in holders:
            setattr(mod, attr, fn)


def op_size(op: str, size: tuple[int, int], multiple: int) -> tuple[int, int]:
    """The input ``op``'s model runs at: ``size``, except for halo attention: the nearest multiple of
    ``multiple`` per side (at least one), as timm's HaloAttn asserts whole blocks; halonet26t's last
    attention runs at stride 32 with 8x8 blocks, so 256: 224 -> 256, 800x1333 -> 768x1280."""
    if op != "halo_attention":
        return size
    return tuple(max(1, round(side / multiple)) * multiple for side in size)


def capture(op: str, size: tuple[int, int], batch: int, device: torch.device) -> list[Case]:
    """The distinct calls of ``op`` in one forward of its model at ``size`` (torch path, fp32)."""
    name = OP_MODELS[op]
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
        return t.to(dtype).requires_grad_(backward) if t.is_floating_point() else t

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


def step_fn(fn: Callable[[], torch.Tensor], backward: bool) -> Callable[[], None]:
    """One call of ``fn`` (fwd: under no_grad), and for fwd+bwd its backward with a fixed grad."""
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

    return step


def count_flops(prep: Prepared, backward: bool) -> int | None:
    """FLOPs of one call on the torch reference path (flop_counter: matmul, conv, SDPA), or None."""
    try:
        with use_kernels("torch"), FlopCounterMode(display=False) as counter:
            step_fn(prep.ours, backward)()
        return int(counter.get_total_flops()) or None
    except Exception:  # noqa: BLE001  (e.g. out of memory on a large reference): no FLOP figure
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
            ours_ms, ours_mib = measure(step_fn(prep.ours, backward), device, s.iters, s.warmup)
            ours_gpu, ours_launches, gpu_note = gpu_time(step_fn(prep.ours, backward), device, s.iters)
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
                anchor_ms, anchor_mib = measure(step_fn(prep.anchor, backward), device, s.iters, s.warmup)
                row.update(anchor_ms=rnd(anchor_ms, 4), anchor_mib=rnd(anchor_mib, 1))
                row["speedup"] = rnd(anchor_ms / ours_ms)
                anchor_gpu, anchor_launches, note = gpu_time(step_fn(prep.anchor, backward), device, s.iters)
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


# ----------------------------------------------------------------------------- models
@dataclass(frozen=True)
class Pair:
    """attnzoo model vs its anchor; ``anchor(img_size)`` builds the anchor (random init, seeded).

    ``size``: timm's / the official input size (timm's HaloAttn needs block multiples: 256);
    ``quick_size``: the smallest size the anchor accepts, for ``--quick``.
    """

    ours: str
    anchor_name: str
    anchor: Callable[[int], torch.nn.Module]
    size: int = 224
    quick_size: int = 224
    channels_last: bool = False


PAIRS = (
    Pair("az_halonet26t", "timm halonet26t", lambda size: timm.create_model("halonet26t"), 256, 256, True),
    Pair("biformer_tiny", "official BiFormer biformer_tiny", lambda size: anchors.official_biformer()),
    Pair(
        "infvit_pure_4l",
        "official InfSA ImageClassifier (pure)",
        lambda size: anchors.official_infvit("pure_infsa", size),
        quick_size=64,
    ),
    Pair(
        "infvit_linear_4l",
        "official InfSA ImageClassifier (linear)",
        lambda size: anchors.official_infvit("linear_infsa", size),
        quick_size=64,
    ),
    Pair("az_convit_tiny", "timm convit_tiny", lambda size: timm.create_model("convit_tiny")),
)


def build_pair(pair: Pair, size: int) -> tuple[torch.nn.Module, torch.nn.Module | None, str | None]:
    """(ours, anchor or None, why not): ours holds the anchor's weights, converted by attnzoo."""
    torch.manual_seed(0)
    try:
        anchor = pair.anchor(size)
    except anchors.AnchorMissing:
        return timm.create_model(pair.ours), None, "anchor missing"
    ours = timm.create_model(pair.ours)
    ours.load_state_dict(attnzoo.convert_official(pair.ours, anchor.state_dict(), ours))
    return ours, anchor, None


def images_per_s(
    model: torch.nn.Module,
    pair: Pair,
    size: int,
    train: bool,
    compiled: bool,
    device: torch.device,
    s: Settings,
) -> tuple[float, float | None, str]:
    """(images/s, peak MiB of the timed steps, kernels) of training steps (SGD) or inference, bf16
    autocast on CUDA (fp32 on the CPU, where bf16 autocast is slower than fp32 and only the code path
    is checked). Kernels: the attnzoo Triton ops one eager step ran ('torch' for none)."""
    memory_format = torch.channels_last if pair.channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory_format).train(train)
    x = torch.randn(s.model_batch, 3, size, size, device=device)
    x = x.to(memory_format=memory_format)
    y = torch.randint(0, 1000, (s.model_batch,), device=device)
    forward = torch.compile(model) if compiled else model
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step() -> None:
        amp = torch.autocast(device.type, dtype=BF16, enabled=device.type == "cuda")
        with amp, torch.set_grad_enabled(train):
            out = forward(x)
            loss = F.cross_entropy(out.float(), y) if train else None
        if train:
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

    kernels = "torch.compile"
    if not compiled:  # one more warm-up step, recording which attnzoo Triton ops run
        with KernelRecorder() as recorder:
            step()
        kernels = recorder.describe()
    ms, _ = measure(step, device, s.iters, s.warmup)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return s.model_batch * 1e3 / ms, peak, kernels


def model_row(pair: Pair, train: bool, compiled: bool, device: torch.device, s: Settings) -> Iterator[dict]:
    size = pair.quick_size if s is QUICK else pair.size
    ours, anchor, missing = build_pair(pair, size)
    row = {
        "kind": "model",
        "model": pair.ours,
        "anchor": pair.anchor_name,
        "mode": ("train" if train else "infer") + (" compiled" if compiled else " eager"),
        "batch": s.model_batch,
        "img_size": size,
        "amp": "bf16" if device.type == "cuda" else "none (cpu: fp32)",
        "channels_last": pair.channels_last,
        "backend": None,
        "ours_img_s": None,
        "anchor_img_s": None,
        "ratio": None,
        "ours_mib": None,
        "anchor_mib": None,
        "status": missing or "ok",
    }
    ours_rate, peak, kernels = images_per_s(ours, pair, size, train, compiled, device, s)
    row.update(ours_img_s=rnd(ours_rate, 1), ours_mib=rnd(peak, 1), backend=kernels)
    del ours
    free_memory(device)
    if anchor is not None:
        try:
            rate, peak, _ = images_per_s(anchor, pair, size, train, compiled, device, s)
            row.update(anchor_img_s=rnd(rate, 1), anchor_mib=rnd(peak, 1))
            row["ratio"] = rnd(ours_rate / rate)
        except Exception as err:  # noqa: BLE001  (recorded: the anchor failed, ours still counts)
            row["status"] = f"anchor error: {why(err)}"
    yield row
    del anchor
    free_memory(device)


# ----------------------------------------------------------------------------- the plan
@dataclass
class Task:
    phase: str
    name: str
    run: Callable[[], Iterator[dict]]


def plan(device: torch.device, s: Settings, peaks) -> list[Task]:
    """Every task, most important first: eager models, kernels at 224, at 800x1333, compiled."""
    tasks = []
    for pair in PAIRS:
        for train in (True, False):
            mode = "train" if train else "infer"
            tasks.append(
                Task("models eager", f"{pair.ours} {mode}", _bind(model_row, pair, train, False, device, s))
            )
    cache: dict[tuple[str, str], list[Case]] = {}

    def cases(op: str, label: str, size: tuple[int, int], batch: int) -> list[Case]:
        if (op, label) not in cache:
            cache[op, label] = capture(op, op_size(op, size, s.halo_multiple), batch, device)
        return cache[op, label]

    ops = sorted(KERNELS, key=lambda op: (OP_ORDER.index(op) if op in OP_ORDER else len(OP_ORDER), op))
    for label, size, batch in s.sizes:
        for dtype in (BF16, FP32):
            for op in ops:
                name = f"{op} @{label} {DTYPE_NAMES[dtype]}"
                if op not in OP_MODELS:
                    tasks.append(Task(f"kernels {label}", name, _unsupported(op)))
                    continue

                def run(op=op, label=label, size=size, batch=batch, dtype=dtype, only=None) -> Iterator[dict]:
                    for i, case in enumerate(cases(op, label, size, batch)):
                        if only in (None, i):
                            yield from kernel_rows(case, dtype, device, s, peaks)

                if s.split_cases:
                    for i in range(s.split_cases):
                        tasks.append(
                            Task(f"kernels {label}", f"{name} case {i}", functools.partial(run, only=i))
                        )
                else:
                    tasks.append(Task(f"kernels {label}", name, run))
    for pair in PAIRS:
        for train in (False, True):
            mode = "train" if train else "infer"
            name = f"{pair.ours} {mode} compiled"
            tasks.append(
                Task("compile", name, _bind(model_row, pair, train, True, device, s) if s.compile else None)
            )
    label, size, batch = s.sizes[0]
    op = "bilevel_routing_attention"

    def flex() -> Iterator[dict]:
        for case in cases(op, label, size, batch):
            yield from kernel_rows(case, BF16, device, s, peaks, flex=True)

    tasks.append(Task("compile", f"{op} @{label} bf16 vs flex_attention", flex if s.compile else None))
    return tasks


def _bind(fn: Callable[..., Iterator[dict]], *args: Any) -> Callable[[], Iterator[dict]]:
    return lambda: fn(*args)


def _unsupported(op: str) -> Callable[[], Iterator[dict]]:
    def run() -> Iterator[dict]:
        yield {"kind": "kernel", "op": op, "status": "skipped: no model in OP_MODELS runs it"}

    return run


def execute(tasks: list[Task], results: Results, budget: Budget, min_task_s: float) -> None:
    """Run the tasks in order until the budget is spent; record each skipped or interrupted one."""
    lost = None  # the task after which CUDA was lost
    for task in tasks:
        base = {"kind": "skipped", "phase": task.phase, "task": task.name}
        if lost is not None:
            results.add(dict(base, status=f"skipped: CUDA context lost after {lost}"))
            continue
        if task.run is None:
            results.add(dict(base, status="skipped: --quick (no torch.compile)"))
            continue
        if budget.left() < min_task_s:
            results.add(dict(base, status="skipped: budget"))
            continue
        start = time.monotonic()
        try:
            with deadline(budget.left()):
                for row in task.run():
                    results.add(dict(row, phase=task.phase, task=task.name))
        except BudgetSpent:
            results.add(dict(base, status="interrupted: budget"))
        except Exception as err:  # noqa: BLE001  (one broken task must not end the suite)
            results.add(dict(base, status=f"error: {why(err)}"))
            if cuda_lost():
                lost = task.name
        print(f"[{time.monotonic() - _T0:6.1f}s] {task.phase}: {task.name} ({time.monotonic() - start:.1f}s)")
        sys.stdout.flush()


def cuda_lost() -> bool:
    """Whether CUDA is unusable in this process: a fault such as an illegal address is sticky, so every
    later call would fail too, and its rows would be errors of the first task's making."""
    if not torch.cuda.is_initialized():
        return False
    try:
        torch.cuda.synchronize()
    except Exception:  # noqa: BLE001  (whatever the runtime raises, CUDA is gone)
        return True
    return False


# ----------------------------------------------------------------------------- the table
def _fmt(x: Any, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def _pct(value: float | None, pct: float | None, spec: str) -> str:
    return "-" if value is None else f"{value:{spec}}" + (f" ({pct:.1f}%)" if pct is not None else "")


def markdown(meta: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The README tables: model rows, kernel rows, then what was skipped."""
    m = meta
    lines = [
        f"{m['device']}, torch {m['torch']}, triton {m['triton']}, timm {m['timm']}, {m['date']}",
        "",
        "| model | anchor | mode | ours kernels | ours img/s | anchor img/s | ratio | peak MiB ours / anchor "
        "| status |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in (r for r in rows if r["kind"] == "model"):
        lines.append(
            f"| {r['model']} | {r['anchor']} | {r['mode']} | {r['backend']} | {_fmt(r['ours_img_s'], '.1f')} "
            f"| {_fmt(r['anchor_img_s'], '.1f')} | {_fmt(r['ratio'])} "
            f"| {_fmt(r['ours_mib'], '.0f')} / {_fmt(r['anchor_mib'], '.0f')} | {r['status']} |"
        )
    lines += [
        "",
        "| op | model @input: shapes | dtype | pass | backend | ours ms | anchor | anchor ms | speed-up "
        "| GPU ms ours / anchor (speed-up) | launches ours / anchor "
        "| MiB ours / anchor | TFLOP/s (% peak) | GB/s (% peak) | status |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in (r for r in rows if r["kind"] == "kernel" and "ours_ms" in r):
        lines.append(
            f"| {r['op']} | {r['model']} @{r['input']}: {r['shape']} | {r['dtype']} | {r['pass']} "
            f"| {r['backend']} | {_fmt(r['ours_ms'], '.3f')} | {r['anchor'] or '-'} "
            f"| {_fmt(r['anchor_ms'], '.3f')} | {_fmt(r['speedup'])} "
            f"| {_fmt(r.get('ours_gpu_ms'), '.3f')} / {_fmt(r.get('anchor_gpu_ms'), '.3f')} "
            f"({_fmt(r.get('gpu_speedup'))}) | {_fmt(r.get('ours_launches'), '.0f')} / "
            f"{_fmt(r.get('anchor_launches'), '.0f')} "
            f"| {_fmt(r['ours_mib'], '.0f')} / {_fmt(r['anchor_mib'], '.0f')} "
            f"| {_pct(r.get('tflops'), r.get('pct_peak_tflops'), '.2f')} "
            f"| {_pct(r.get('gbps'), r.get('pct_peak_gbps'), '.1f')} | {r['status']} |"
        )
    skipped = [r for r in rows if r["kind"] == "skipped" or "ours_ms" not in r and r["kind"] == "kernel"]
    if skipped:
        lines += [
            "",
            "Not run: " + "; ".join(f"{r.get('task', r.get('op'))} ({r['status']})" for r in skipped),
        ]
    return "\n".join(lines)


def _claimed(run: Callable[[], Iterator[dict]], claim: Path) -> Callable[[], Iterator[dict]]:
    """``run`` for the warm-up worker that first creates ``claim``; nothing for the others. The
    workers walk the same task list and each takes the next unclaimed task, so the load balances."""

    def run_if_claimed() -> Iterator[dict]:
        try:
            os.close(os.open(claim, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return iter(())
        return run()

    return run_if_claimed


def warm_up(args: argparse.Namespace, seconds: float) -> float:
    """Run the tasks once, split over ``--warm-workers`` processes that compile every Triton config
    and time none (``ATTNZOO_AUTOTUNE=compile``), and torch.compile the compiled rows' models: the
    compile caches on disk are then full, so the timed run spends its budget timing, not compiling
    one kernel after another. Returns the seconds it took."""
    start = time.monotonic()
    n = args.warm_workers
    filters = [*(["--only", *args.only] if args.only else []), *(["--skip", *args.skip] if args.skip else [])]
    env = dict(os.environ, ATTNZOO_AUTOTUNE="compile")
    with tempfile.TemporaryDirectory() as tmp:
        procs = []
        for i in range(n):
            cmd = [sys.executable, __file__, "--warm-claims", f"{tmp}/claims", "--out", f"{tmp}/{i}"]
            cmd += ["--budget-s", str(seconds), "--device", args.device, *filters]
            cmd += ["--quick"] if args.quick else []
            with open(f"{tmp}/{i}.log", "w") as log:
                procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
        for i, proc in enumerate(procs):
            try:
                proc.wait(timeout=max(1.0, start + seconds + 15 - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.returncode != 0:
                tail = Path(f"{tmp}/{i}.log").read_text().splitlines()[-5:]
                print(f"warm-up worker {i} exited {proc.returncode}:", *tail, sep="\n  ")
    return time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--budget-s", type=float, default=240.0, help="wall clock for the whole run")
    parser.add_argument("--reserve-s", type=float, default=10.0, help="kept back for printing and exit")
    parser.add_argument("--quick", action="store_true", help="tiny shapes, one iteration (runs on CPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--only", nargs="+", metavar="TEXT", help="run only tasks whose name contains one")
    parser.add_argument("--skip", nargs="+", metavar="TEXT", help="leave out tasks whose name contains one")
    parser.add_argument(
        "--warm-workers", type=int, default=0, help="processes that compile every task's kernels first"
    )
    parser.add_argument("--warm-share", type=float, default=0.4, help="the budget share the warm-up may take")
    parser.add_argument("--warm-claims", type=Path, help=argparse.SUPPRESS)  # a warm-up worker's claim folder
    parser.add_argument(
        "--table", type=Path, nargs="+", metavar="JSON", help="print saved runs' tables, run nothing"
    )
    args = parser.parse_args(argv)
    if args.table:
        for path in args.table:
            saved = json.loads(path.read_text())
            print(f"{path.name}:", markdown(saved["meta"], saved["rows"]), sep="\n", end="\n\n")
        return 0
    device = torch.device(args.device)
    settings = QUICK if args.quick else WARM if args.warm_claims else FULL
    if device.type == "cuda":  # one compiled graph per shape: don't fall back to eager after 8
        for knob in ("recompile_limit", "cache_size_limit"):
            if hasattr(torch._dynamo.config, knob):
                setattr(torch._dynamo.config, knob, 1024)
    warm_s = warm_up(args, args.warm_share * args.budget_s) if args.warm_workers > 0 else None
    meta = dict(run_meta(device, args), warm_up_s=rnd(warm_s, 1), warm_workers=args.warm_workers)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    results = Results(args.out / f"{slug(meta['device'])}-{stamp}.json", meta)
    print(f"writing {results.path} (budget {args.budget_s:.0f} s)")
    budget = Budget(args.budget_s, args.reserve_s)
    tasks = plan(device, settings, meta["peaks"])
    if args.only:
        tasks = [t for t in tasks if any(text in t.name for text in args.only)]
    if args.skip:
        tasks = [t for t in tasks if not any(text in t.name for text in args.skip)]
    if args.warm_claims:
        args.warm_claims.mkdir(parents=True, exist_ok=True)
        tasks = [
            Task(t.phase, t.name, t.run and _claimed(t.run, args.warm_claims / str(i)))
            for i, t in enumerate(tasks)
        ]
    execute(tasks, results, budget, min_task_s=2.0)
    results.write()
    print(markdown(results.meta, results.rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Timing one call: wall time over CUDA events, GPU time from the profiler, peak memory."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import torch

from suite.records import why


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compile_cache_counts() -> dict[str, int]:
    """This process's compile-cache events so far: Inductor's FX-graph cache and AOTAutograd's cache
    (``inductor.fxgraph_cache_hit``, ``aot_autograd.autograd_cache_miss``, ``..._bypass``, ...)."""
    from torch._dynamo.utils import counters

    return {
        f"{group}.{name}": count
        for group in ("inductor", "aot_autograd")
        for name, count in counters[group].items()
        if "cache" in name
    }


def first_call(fn: Callable[[], Any], device: torch.device) -> dict[str, Any]:
    """Run ``fn`` once, synchronised: its wall seconds (where compiling and autotuning happen) and the
    compile-cache events it caused, so a slow first step says whether it compiled from scratch."""
    before = compile_cache_counts()
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    seconds = time.perf_counter() - start
    after = compile_cache_counts()
    events = {key: count - before.get(key, 0) for key, count in after.items() if count != before.get(key, 0)}
    return {"first_step_s": round(seconds, 3), "compile_cache": events}


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

"""ContMix aggregation: time of forward and forward + backward, and peak memory, on CUDA.

Three formulations of the same op (``attnzoo.kernels.contmix``'s math: per pixel, a softmax over its
clamped ``K x K`` window of ``q . proj + proj_bias + rpb``, then the weighted sum of the window's
values):

- ``triton``: ``attnzoo.kernels.contmix`` (online softmax, windows gathered by pointer, nothing of
  size ``[B, G, H, W, K * K]`` stored);
- ``reference``: ``contmix_reference``, the ``[B, G, H, W, K * K]`` weights and the gathered
  ``[B, G, H, W, K * K, Cv]`` windows (what an unfold-based implementation holds);
- ``weights + gather``: the official style of path (NATTEN's ``na2d_av`` memory profile): the
  ``[B, G, H, W, K * K]`` weights materialised, then ``K * K`` shifted gathers of ``v`` accumulated
  one offset at a time (no window tensor).

Shapes: OverLoCK's dynamic-kernel stages, 16 channels per group for q and v (stage 3: 256 channels,
so 8 groups; stage 4 assumed to keep 16 per group, 16 groups), at a 224 input (14x14 with K = 5 / 13,
7x7 with K = 5 / 7; batch 64) and an 800x1333 detection input (50x84 and 25x42; batch 2). Peak
memory is above the inputs. Prints one markdown table with the device, versions and date, ready for
benchmarks/RESULTS.md.

    python benchmarks/bench_contmix.py
    python benchmarks/bench_contmix.py --dtypes bfloat16 --reps 10
    python benchmarks/bench_contmix.py --smoke   # tiny CPU run of every path (no timings worth keeping)
"""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Callable

import torch
from suite.timing import measure as time_call

from attnzoo.kernels import use_kernels
from attnzoo.kernels.contmix import contmix, contmix_reference
from attnzoo.kernels.contmix.reference import check_shapes, window_starts

CHANNELS = 16  # per group, q and v alike
# (label, batch, groups, H, W, K)
SHAPES = [
    ("224 s3", 64, 8, 14, 14, 5),
    ("224 s3", 64, 8, 14, 14, 13),
    ("224 s4", 64, 16, 7, 7, 5),
    ("224 s4", 64, 16, 7, 7, 7),
    ("800x1333 s3", 2, 8, 50, 84, 5),
    ("800x1333 s3", 2, 8, 50, 84, 13),
    ("800x1333 s4", 2, 16, 25, 42, 5),
    ("800x1333 s4", 2, 16, 25, 42, 7),
]
SMOKE_SHAPES = [("smoke", 1, 2, 9, 11, 5)]


def problem(batch: int, groups: int, h: int, w: int, k: int, dtype: torch.dtype, device: torch.device):
    """q (scaled), proj, proj_bias, rpb, v for one shape."""
    gen = torch.Generator(device=device).manual_seed(0)

    def randn(*shape, std=1.0):
        return (torch.randn(*shape, generator=gen, device=device) * std).to(dtype)

    return (
        randn(batch, groups, h, w, CHANNELS, std=CHANNELS**-0.5),
        randn(batch, groups, CHANNELS, k * k),
        randn(k * k, std=0.5),
        randn(groups, 2 * k - 1, 2 * k - 1, std=0.5),
        randn(batch, groups, h, w, CHANNELS),
    )


def weights_then_gather(q, proj, proj_bias, rpb, v):
    """Materialised ``[B, G, H, W, K * K]`` weights, then one shifted gather of v per offset."""
    k = check_shapes(q, proj, proj_bias, rpb, v)
    b, g, h, w, _ = q.shape
    dt = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
    rows = window_starts(h, k, q.device)
    cols = window_starts(w, k, q.device)
    rel_r = (
        rows[:, None] + torch.arange(k, device=q.device) - torch.arange(h, device=q.device)[:, None] + k - 1
    )
    rel_c = (
        cols[:, None] + torch.arange(k, device=q.device) - torch.arange(w, device=q.device)[:, None] + k - 1
    )
    bias = rpb.to(dt)[:, rel_r[:, None, :, None], rel_c[None, :, None, :]].reshape(g, h, w, k * k)
    logits = torch.einsum("bghwc,bgck->bghwk", q.to(dt), proj.to(dt)) + proj_bias.to(dt) + bias
    attn = logits.softmax(dim=-1)
    out = torch.zeros(b, g, h, w, v.shape[-1], device=q.device, dtype=dt)
    vf = v.to(dt)
    for a in range(k):
        v_rows = vf.index_select(2, rows + a)
        for c in range(k):
            out = out + attn[..., a * k + c, None] * v_rows.index_select(3, cols + c)
    return out.to(q.dtype)


def run_triton(*inputs):
    """The kernel, forced (on the CPU that needs ``TRITON_INTERPRET=1``; never the silent fallback)."""
    with use_kernels("triton"):
        return contmix(*inputs)


IMPLS: dict[str, Callable] = {
    "triton": run_triton,
    "reference": contmix_reference,
    "weights + gather": weights_then_gather,
}


def measure(fn, inputs, backward: bool, reps: int) -> tuple[float, float]:
    """(median ms, peak MiB above the inputs; nan off CUDA) over ``reps`` runs after two warm-ups."""
    inputs = [t.detach().requires_grad_(backward) for t in inputs]
    grad = torch.randn(inputs[0].shape[:-1] + inputs[4].shape[-1:], device=inputs[0].device).to(
        inputs[0].dtype
    )

    def once():
        with torch.enable_grad() if backward else torch.no_grad():
            out = fn(*inputs)
            if backward:
                torch.autograd.grad(out, inputs, grad)

    ms, peak = time_call(once, inputs[0].device, reps, warmup=2)
    return ms, float("nan") if peak is None else peak


def agreement(inputs) -> float:
    """Max |triton - weights + gather| in fp32 on the first image (forward)."""
    q, proj, proj_bias, rpb, v = (t.float() for t in inputs)
    first = (q[:1], proj[:1], proj_bias, rpb, v[:1])
    return (run_triton(*first) - weights_then_gather(*first)).abs().max().item()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--dtypes", nargs="+", default=["bfloat16", "float32"], choices=["bfloat16", "float16", "float32"]
    )
    parser.add_argument("--impls", nargs="+", default=list(IMPLS), choices=list(IMPLS))
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument(
        "--smoke", action="store_true", help="one tiny shape on the CPU, fp32, 1 rep (the triton row needs "
        "TRITON_INTERPRET=1, else it runs the reference): checks the script, measures nothing",
    )  # fmt: skip
    args = parser.parse_args()
    if args.smoke:
        device, shapes, dtypes, reps = torch.device("cpu"), SMOKE_SHAPES, ["float32"], 1
    elif not torch.cuda.is_available():
        print("bench_contmix: CUDA is not available; it times GPU kernels only (try --smoke).")
        return 0
    else:
        device, shapes, dtypes, reps = torch.device("cuda"), SHAPES, args.dtypes, args.reps
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "not installed (the triton rows fall back to the torch reference)"
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (smoke)"
    print("## ContMix (benchmarks/bench_contmix.py)\n")
    print(
        f"{datetime.date.today().isoformat()}, {name}, torch {torch.__version__}, triton {triton_version}, "
        f"{CHANNELS} channels per group, median of {reps}\n"
    )
    print("| shape | batch | groups | HxW | K | dtype | impl | fwd ms | fwd+bwd ms | fwd MiB | fwd+bwd MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    notes = []
    for label, batch, groups, h, w, k in shapes:
        for dtype_name in dtypes:
            inputs = problem(batch, groups, h, w, k, getattr(torch, dtype_name), device)
            if "triton" in args.impls:
                try:
                    diff = f"{agreement(inputs):.2e}"
                except RuntimeError as err:
                    diff = f"not run ({err})"
                notes.append(
                    f"{label} K={k} {dtype_name}: max |triton - weights + gather| (fp32, 1 image) = {diff}"
                )
            for impl in args.impls:
                cells = []
                for backward in (False, True):
                    try:
                        cells.append(measure(IMPLS[impl], inputs, backward, reps))
                    except torch.OutOfMemoryError:
                        cells.append(None)
                    except Exception as err:  # noqa: BLE001  (report, keep benchmarking the others)
                        notes.append(f"{label} K={k} {dtype_name} {impl}: {type(err).__name__}: {err}")
                        cells.append(None)
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                ms = [f"{c[0]:.3f}" if c else "oom/err" for c in cells]
                mib = [f"{c[1]:.0f}" if c else "-" for c in cells]
                print(
                    f"| {label} | {batch} | {groups} | {h}x{w} | {k} | {dtype_name} | {impl} "
                    f"| {ms[0]} | {ms[1]} | {mib[0]} | {mib[1]} |",
                    flush=True,
                )
    for note in notes:
        print(f"- {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

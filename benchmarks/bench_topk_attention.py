"""Top-k (Sparsifiner) attention: time of forward and forward + backward, and peak memory, on CUDA.

Three formulations of the same attention (every patch row attends to its own K keys, the cls row to
all keys):

- ``triton``: ``attnzoo.kernels.topk_attention`` on the M = N - 1 patch rows (its index range check,
  one min / max and one sync, included) plus SDPA for the single cls row;
- ``sdpa dense``: ``F.scaled_dot_product_attention`` without a mask (all N keys per row): the floor
  of what dense attention costs, not the same result;
- ``official masked``: Sparsifiner's path, dense scores, ``masked_fill(~mask, -inf)``, softmax,
  ``@ v``, with the boolean ``[B, H, N, N]`` mask built from the same indices (cls row all True).

The index and the mask are built once per shape, outside the timings (each path's natural input). At
DeiT-S geometry (B = 64, H = 6, D = 64, N = 197, K = 50) and at N = 577, 1025, 2305 with
K = ceil(N / 4) (default batch 16 there), in bf16 and fp32. Prints one markdown table with the
device, versions and date, ready for benchmarks/RESULTS.md.

    python benchmarks/bench_topk_attention.py
    python benchmarks/bench_topk_attention.py --tokens 197 --dtypes bfloat16 --reps 10
"""

from __future__ import annotations

import argparse
import datetime
import math
import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F

HEADS, HEAD_DIM = 6, 64  # DeiT-S
DEIT_TOKENS, DEIT_K = 197, 50


def problem(batch: int, n: int, topk: int, dtype: torch.dtype, device: torch.device):
    """q, k, v ``[B, H, N, D]`` and the patch rows' distinct key indices ``[B, H, N - 1, K]`` (int64)."""
    gen = torch.Generator(device=device).manual_seed(0)
    q, k, v = (
        torch.randn(batch, HEADS, n, HEAD_DIM, generator=gen, device=device, dtype=dtype) for _ in "qkv"
    )
    scores = torch.rand(batch, HEADS, n - 1, n, generator=gen, device=device)
    idx = torch.topk(scores, topk, dim=-1).indices
    return q, k, v, idx


def dense_mask(idx: torch.Tensor, n: int) -> torch.Tensor:
    """The official boolean ``[B, H, N, N]`` mask: cls row dense, patch row m True at its K keys."""
    b, h, m, _ = idx.shape
    mask = torch.zeros(b, h, n, n, dtype=torch.bool, device=idx.device)
    mask[:, :, 0] = True
    mask[:, :, 1:].scatter_(-1, idx, True)
    return mask


def run_triton(q, k, v, idx, mask, scale):
    from attnzoo.kernels import topk_attention

    cls = F.scaled_dot_product_attention(q[:, :, :1], k, v, scale=scale)
    return torch.cat([cls, topk_attention(q[:, :, 1:], k, v, idx, scale)], dim=2)


def run_sdpa(q, k, v, idx, mask, scale):
    return F.scaled_dot_product_attention(q, k, v, scale=scale)


def run_official(q, k, v, idx, mask, scale):
    attn = (q @ k.transpose(-2, -1)) * scale
    attn = attn.masked_fill(~mask, float("-inf")).softmax(dim=-1)
    return attn @ v


IMPLS: dict[str, Callable] = {"triton": run_triton, "sdpa dense": run_sdpa, "official masked": run_official}


def measure(fn, q, k, v, idx, mask, scale, backward: bool, reps: int) -> tuple[float, float]:
    """(median ms over ``reps`` CUDA-event timings after two warm-ups, peak MiB above the inputs)."""
    q, k, v = (t.detach().requires_grad_(backward) for t in (q, k, v))
    grad = torch.randn(q.shape[:-1] + v.shape[-1:], device=q.device, dtype=q.dtype)

    def once():
        with torch.enable_grad() if backward else torch.no_grad():
            out = fn(q, k, v, idx, mask, scale)
            if backward:
                torch.autograd.grad(out, (q, k, v), grad)

    for _ in range(2):
        once()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        once()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    return sorted(times)[len(times) // 2], peak


def check_agreement(q, k, v, idx, mask, scale) -> float:
    """Max abs difference between the kernel path and the official path (same math), in fp32."""
    q, k, v = (t[:2].float() for t in (q, k, v))
    return (
        (run_triton(q, k, v, idx[:2], mask[:2], scale) - run_official(q, k, v, idx[:2], mask[:2], scale))
        .abs()
        .max()
        .item()
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[197, 577, 1025, 2305])
    parser.add_argument("--batch", type=int, default=64, help="batch at N = 197 (DeiT-S)")
    parser.add_argument("--large-batch", type=int, default=16, help="batch at the larger token counts")
    parser.add_argument(
        "--dtypes", nargs="+", default=["bfloat16", "float32"], choices=["bfloat16", "float16", "float32"]
    )
    parser.add_argument("--impls", nargs="+", default=list(IMPLS), choices=list(IMPLS))
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench_topk_attention: CUDA is not available; it times GPU kernels only, nothing to do.")
        return 0
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "not installed (the triton rows fall back to the torch reference)"
    device = torch.device("cuda")
    print("## Top-k attention (benchmarks/bench_topk_attention.py)\n")
    print(
        f"{datetime.date.today().isoformat()}, {torch.cuda.get_device_name()}, torch {torch.__version__}, "
        f"triton {triton_version}, heads {HEADS}, head dim {HEAD_DIM}, median of {args.reps}\n"
    )
    print("| N | K | batch | dtype | impl | fwd ms | fwd+bwd ms | fwd peak MiB | fwd+bwd peak MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    notes = []
    for n in args.tokens:
        topk = DEIT_K if n == DEIT_TOKENS else math.ceil(0.25 * n)
        batch = args.batch if n == DEIT_TOKENS else args.large_batch
        for dtype_name in args.dtypes:
            dtype = getattr(torch, dtype_name)
            try:
                q, k, v, idx = problem(batch, n, topk, dtype, device)
                mask = dense_mask(idx, n)
            except torch.OutOfMemoryError:
                notes.append(f"N={n} {dtype_name}: inputs do not fit")
                continue
            scale = HEAD_DIM**-0.5
            if "triton" in args.impls and "official masked" in args.impls:
                notes.append(
                    f"N={n} {dtype_name}: max |triton - official| (fp32, 2 images) = "
                    f"{check_agreement(q, k, v, idx, mask, scale):.2e}"
                )
            for name in args.impls:
                cells = []
                for backward in (False, True):
                    try:
                        cells.append(measure(IMPLS[name], q, k, v, idx, mask, scale, backward, args.reps))
                    except torch.OutOfMemoryError:
                        cells.append(None)
                    except Exception as err:  # noqa: BLE001  (report, keep benchmarking the others)
                        notes.append(f"N={n} {dtype_name} {name}: {type(err).__name__}: {err}")
                        cells.append(None)
                    torch.cuda.empty_cache()
                ms = [f"{c[0]:.3f}" if c else "oom/err" for c in cells]
                mib = [f"{c[1]:.0f}" if c else "-" for c in cells]
                print(
                    f"| {n} | {topk} | {batch} | {dtype_name} | {name} | {ms[0]} | {ms[1]} "
                    f"| {mib[0]} | {mib[1]} |",
                    flush=True,
                )
            del q, k, v, idx, mask
            torch.cuda.empty_cache()
    for note in notes:
        print(f"- {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

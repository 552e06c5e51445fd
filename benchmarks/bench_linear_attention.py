"""MALA / InLine linear attention: time of forward and forward + backward, and peak memory, on CUDA.

Formulations of the same op (``attnzoo.kernels.linear_attention``'s math):

- ``triton``: ``attnzoo.kernels.linear_attention`` (chunked fp32 token reductions, one pass per
  token tile; saves only ``KV``, ``mean(zk)``, ``mean(v)`` per slice for the backward);
- ``reference``: ``linear_attention_reference``, the official code's formulation in plain torch
  (``z = zq @ mean(zk)^T * s``, ``kv = k^T v * s / N``, ``q @ kv * (1 + 1 / (z + eps)) - z * mean(v)``;
  16-bit inputs upcast to fp32, autograd keeps the fp32 copies);
- ``fla causal``: only when flash-linear-attention (``fla``) is importable, its ``chunk_linear_attn``
  (causal, unnormalised ``q (k^T v)``) on the same q, k, v: a speed anchor for a tuned linear-attention
  kernel of the same size, *not* the same op (fla has no non-causal MALA / InLine kernel).

Shapes: MALA's linear-attention stages, head dim 64: stage 1 (1 head) and stage 2 (2 heads) at a 224
input (56x56 = 3136 and 28x28 = 784 tokens, batch 64) and at a 1024 input (65536 and 16384 tokens,
batch 2, as in detection). MALA calls pass separate zq, zk (un-rotated, positive); InLine leaves them
to default to q, k. Peak memory is above the inputs. Prints one markdown table with the device,
versions and date, ready for benchmarks/RESULTS.md.

    python benchmarks/bench_linear_attention.py
    python benchmarks/bench_linear_attention.py --dtypes bfloat16 --kinds mala --reps 10
    python benchmarks/bench_linear_attention.py --smoke   # tiny CPU run of every path (no real timings)
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F
from suite.timing import measure as time_call

from attnzoo.kernels import use_kernels
from attnzoo.kernels.linear_attention import linear_attention, linear_attention_reference

HEAD_DIM = 64
# (label, batch, heads, tokens)
SHAPES = [
    ("224 s1", 64, 1, 56 * 56),
    ("224 s2", 64, 2, 28 * 28),
    ("1024 s1", 2, 1, 256 * 256),
    ("1024 s2", 2, 2, 128 * 128),
]
SMOKE_SHAPES = [("smoke", 1, 2, 150)]
KINDS = ("mala", "inline")


def problem(
    kind: str, batch: int, heads: int, n: int, dtype: torch.dtype, device: torch.device
) -> list[torch.Tensor]:
    """``[q, k, v, zq, zk]`` ``[B, H, N, 64]`` (MALA: zq, zk = ``elu + 1``, q, k signed as after RoPE)
    or ``[q, k, v]`` (InLine)."""
    gen = torch.Generator(device=device).manual_seed(0)

    def randn():
        return torch.randn(batch, heads, n, HEAD_DIM, generator=gen, device=device)

    if kind == "mala":
        tensors = [randn(), randn(), randn(), F.elu(randn()) + 1, F.elu(randn()) + 1]
    else:
        tensors = [randn(), randn(), randn()]
    return [t.to(dtype) for t in tensors]


def run_triton(kind: str, *inputs: torch.Tensor) -> torch.Tensor:
    """The kernel, forced (on the CPU that needs ``TRITON_INTERPRET=1``; never the silent fallback)."""
    with use_kernels("triton"):
        return linear_attention(*inputs, kind=kind)


def run_reference(kind: str, *inputs: torch.Tensor) -> torch.Tensor:
    return linear_attention_reference(*inputs, kind=kind)


def run_fla(kind: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *_z: torch.Tensor) -> torch.Tensor:
    """fla's causal chunked linear attention on ``[B, T, H, D]`` views (a speed anchor only)."""
    from fla.ops.linear_attn import chunk_linear_attn

    o, _ = chunk_linear_attn(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), normalize=False, head_first=False
    )
    return o.transpose(1, 2)


IMPLS: dict[str, Callable] = {"triton": run_triton, "reference": run_reference}
if importlib.util.find_spec("fla") is not None:
    IMPLS["fla causal"] = run_fla


def measure(fn, kind, inputs, backward: bool, reps: int) -> tuple[float, float]:
    """(median ms, peak MiB above the inputs; nan off CUDA) over ``reps`` runs after two warm-ups."""
    inputs = [t.detach().requires_grad_(backward) for t in inputs]
    grad = torch.randn(inputs[2].shape, device=inputs[0].device).to(inputs[0].dtype)

    def once():
        with torch.enable_grad() if backward else torch.no_grad():
            out = fn(kind, *inputs)
            if backward:
                torch.autograd.grad(out, inputs, grad, allow_unused=True)

    ms, peak = time_call(once, inputs[0].device, reps, warmup=2)
    return ms, float("nan") if peak is None else peak


def agreement(kind: str, inputs: list[torch.Tensor]) -> float:
    """Max |triton - reference| (fp32 reference on the same inputs), relative to max |reference|,
    on the first image (forward)."""
    first = [t[:1] for t in inputs]
    ref = linear_attention_reference(*(t.float() for t in first), kind=kind)
    return ((run_triton(kind, *first).float() - ref).abs().max() / ref.abs().max()).item()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--dtypes", nargs="+", default=["bfloat16", "float32"], choices=["bfloat16", "float16", "float32"]
    )
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    parser.add_argument("--impls", nargs="+", default=list(IMPLS), choices=list(IMPLS))
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument(
        "--smoke", action="store_true", help="one tiny shape on the CPU, fp32, 1 rep (the triton row needs "
        "TRITON_INTERPRET=1): checks the script, measures nothing",
    )  # fmt: skip
    args = parser.parse_args()
    if args.smoke:
        device, shapes, dtypes, reps = torch.device("cpu"), SMOKE_SHAPES, ["float32"], 1
        impls = [i for i in args.impls if i != "fla causal"]
    elif not torch.cuda.is_available():
        print("bench_linear_attention: CUDA is not available; it times GPU kernels only (try --smoke).")
        return 0
    else:
        device, shapes, dtypes, reps, impls = torch.device("cuda"), SHAPES, args.dtypes, args.reps, args.impls
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "not installed (the triton rows cannot run)"
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (smoke)"
    fla = "fla installed" if "fla causal" in IMPLS else "flash-linear-attention not installed (no fla row)"
    print("## MALA / InLine linear attention (benchmarks/bench_linear_attention.py)\n")
    print(
        f"{datetime.date.today().isoformat()}, {name}, torch {torch.__version__}, triton {triton_version}, "
        f"{fla}, head dim {HEAD_DIM}, median of {reps}\n"
    )
    print("| shape | batch | heads | N | kind | dtype | impl | fwd ms | fwd+bwd ms | fwd MiB | fwd+bwd MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    notes = []
    for label, batch, heads, n in shapes:
        for kind in args.kinds:
            for dtype_name in dtypes:
                inputs = problem(kind, batch, heads, n, getattr(torch, dtype_name), device)
                if "triton" in impls:
                    try:
                        diff = f"{agreement(kind, inputs):.2e}"
                    except RuntimeError as err:
                        diff = f"not run ({err})"
                    notes.append(
                        f"{label} {kind} {dtype_name}: max |triton - reference| / max |reference| = {diff}"
                    )
                for impl in impls:
                    cells = []
                    for backward in (False, True):
                        try:
                            cells.append(measure(IMPLS[impl], kind, inputs, backward, reps))
                        except torch.OutOfMemoryError:
                            cells.append(None)
                        except Exception as err:  # noqa: BLE001  (report, keep benchmarking the others)
                            notes.append(f"{label} {kind} {dtype_name} {impl}: {type(err).__name__}: {err}")
                            cells.append(None)
                        if device.type == "cuda":
                            torch.cuda.empty_cache()
                    ms = [f"{c[0]:.3f}" if c else "oom/err" for c in cells]
                    mib = [f"{c[1]:.0f}" if c else "-" for c in cells]
                    print(
                        f"| {label} | {batch} | {heads} | {n} | {kind} | {dtype_name} | {impl} "
                        f"| {ms[0]} | {ms[1]} | {mib[0]} | {mib[1]} |",
                        flush=True,
                    )
    for note in notes:
        print(f"- {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

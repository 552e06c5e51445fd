"""Infinite Self-Attention vs softmax SDPA: time and peak memory of one attention layer, 224 to 2048 px.

Layer: ViT-B geometry by default (768 wide, 12 heads, head dim 64), batch 1, patch 16, so an image of
side S gives N = (S / 16)**2 + 1 tokens (224 -> 197, 1024 -> 4097, 2048 -> 16385). Compared:
timm's ``Attention`` (softmax through ``F.scaled_dot_product_attention``) and attnzoo's
``InfiniteSelfAttention`` in ``pure`` and ``linear`` mode. ``--model`` instead times whole models:
``infvit_{pure,linear}_4l`` against the same 4-layer ViT-L/16 with softmax attention.

On CUDA the InfSA layers run their Triton kernels and peak memory is ``max_memory_allocated``
above the resident weights and input. Without a GPU both sides run in torch on the CPU (InfSA's
*reference* path, which materialises the N x N map, unlike the kernel); each case then runs in a
fresh process and memory is the growth of its peak RSS, and cases whose N x N maps would not fit
``--max-map-gib`` are skipped. The table says which backend ran.

usage: python benchmarks/bench_infinite_attention.py [--device cuda] [--dtype bf16]
       [--sizes 224 1024 2048] [--backward] [--model] [--iters 5]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import time

import torch

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
METHODS = ("softmax-sdpa", "infsa-pure", "infsa-linear")


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def build(method: str, model: bool, dim: int, heads: int) -> torch.nn.Module:
    import timm
    from timm.layers import Attention

    import attnzoo  # noqa: F401  (registers the models)
    from attnzoo.layers import InfiniteSelfAttention

    torch.manual_seed(0)
    if model:
        if method == "softmax-sdpa":
            return timm.create_model(
                "vit_large_patch16_224", depth=4, dynamic_img_size=True, dynamic_img_pad=True
            )
        return timm.create_model(f"infvit_{method.removeprefix('infsa-')}_4l")
    if method == "softmax-sdpa":
        return Attention(dim, heads, qkv_bias=True)
    return InfiniteSelfAttention(dim, heads, mode=method.removeprefix("infsa-"), qkv_bias=True)


def run_case(case: dict) -> dict:
    """Time (ms per call) and peak memory (MiB above the set-up) of one (method, size) case."""
    from attnzoo.kernels import use_triton

    device, dtype = case["device"], DTYPES[case["dtype"]]
    if case["threads"]:
        torch.set_num_threads(case["threads"])
    layer = build(case["method"], case["model"], case["dim"], case["heads"]).to(device, dtype)
    layer.train(case["backward"])
    side = case["size"]
    if case["model"]:
        x = torch.randn(1, 3, side, side, device=device, dtype=dtype)
    else:
        n = (side // 16) ** 2 + 1
        x = torch.randn(1, n, case["dim"], device=device, dtype=dtype)
    x.requires_grad_(case["backward"])
    backend = "torch"
    if case["method"] != "softmax-sdpa":
        backend = "triton" if use_triton(x) else "torch (reference)"

    def step() -> None:
        if case["backward"]:
            layer(x).float().square().mean().backward()
        else:
            with torch.no_grad():
                layer(x)

    if device == "cuda":
        step()  # warm-up: compilation, library workspaces, autograd buffers
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:  # RSS only grows: the first (warm-up) call sets the high-water mark
        base = _rss_mib()
        step()
        peak = _rss_mib() - base
    start = time.perf_counter()
    for _ in range(case["iters"]):
        step()
    _sync(device)
    ms = (time.perf_counter() - start) * 1e3 / case["iters"]
    return dict(case, ms=ms, peak_mib=peak, backend=backend)


def _child(case: dict, queue) -> None:
    try:
        queue.put(run_case(case))
    except Exception as err:  # report, don't hang the parent
        queue.put(dict(case, error=f"{type(err).__name__}: {err}"))


def run_isolated(case: dict) -> dict:
    """One case in a fresh process, so its peak RSS is its own (the CPU has no allocator statistics)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(case, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def map_gib(case: dict) -> float:
    """Size of one fp32 N x N map per head set (the pure reference's dominant intermediate)."""
    n = (case["size"] // 16) ** 2 + 1
    heads = 16 if case["model"] else case["heads"]
    return heads * n * n * 4 / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 512, 1024, 2048])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--backward", action="store_true", help="time forward + backward (train mode)")
    parser.add_argument("--model", action="store_true", help="whole 4-layer models instead of one layer")
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    parser.add_argument(
        "--max-map-gib", type=float, default=3.0, help="CPU: skip pure-reference cases with larger N x N maps"
    )
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()

    what = "4-layer ViT-L/16 models" if args.model else f"one layer, {args.dim} wide, {args.heads} heads"
    print(f"torch {torch.__version__}, device {args.device}", end="")
    if args.device == "cuda":
        print(f" ({torch.cuda.get_device_name()})", end="")
    print(f", dtype {args.dtype}, {what}, batch 1, {'fwd+bwd' if args.backward else 'forward'}")
    print(f"{'size':>5} {'tokens':>6} {'method':14} {'backend':18} {'ms':>10} {'peak MiB':>10}")
    rows = []
    for size in args.sizes:
        for method in args.methods:
            case = dict(
                method=method,
                size=size,
                device=args.device,
                dtype=args.dtype,
                dim=args.dim,
                heads=args.heads,
                backward=args.backward,
                model=args.model,
                iters=args.iters,
                threads=args.threads,
            )
            n = (size // 16) ** 2 + 1
            if args.device == "cpu" and method == "infsa-pure" and map_gib(case) > args.max_map_gib:
                need = f"{map_gib(case):.1f} GiB"
                print(f"{size:>5} {n:>6} {method:14} skipped: the reference's N x N maps need {need}")
                continue
            row = run_isolated(case) if args.device == "cpu" else run_case(case)
            rows.append(row)
            if "error" in row:
                print(f"{size:>5} {n:>6} {method:14} {row['error']}")
            else:
                timing = f"{row['ms']:>10.1f} {row['peak_mib']:>10.0f}"
                print(f"{size:>5} {n:>6} {method:14} {row['backend']:18} {timing}")
            sys.stdout.flush()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()

"""Peak training memory of Fourier-KArAt ViTs: naive reference vs fused Triton kernel vs softmax ViT.

One training step (forward, cross-entropy, backward; AdamW state not included) of a whole model at
224 px on CUDA. Compared, for each ``--model`` (default: ``karat_vit_tiny_g3b``):

- ``reference``: the model with ``use_kernels("torch")``, whose attention materialises the
  ``[B, H, N, N, 2G + 1]`` activated tensor (what a direct implementation of the paper stores);
- ``kernel``: the same model with ``use_kernels("triton")`` (the fused op streams key tiles and keeps
  no ``N x N`` tensor for backward);
- ``timm-vit``: timm's softmax ViT of the same geometry (``vit_{tiny,small,base}_patch16_224``, SDPA).

Peak memory is ``torch.cuda.max_memory_allocated`` during the step minus what was allocated before
it (weights, input); time is the median step over ``--iters`` after one warm-up. Needs a GPU: this is
a measurement script, not a test.

usage: python benchmarks/karat_memory.py [--model karat_vit_tiny_g3b ...] [--batch 64]
       [--dtype fp32|bf16] [--iters 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time

import torch

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def build(name: str, path: str, num_classes: int) -> torch.nn.Module:
    import timm

    import attnzoo  # noqa: F401  (registers the models)

    torch.manual_seed(0)
    if path == "timm-vit":
        name = re.sub(r"karat_vit_(\w+)_g\d+[bu]", r"vit_\1_patch16_224", name)
    return timm.create_model(name, num_classes=num_classes)


def step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype) -> None:
    with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
        loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    model.zero_grad(set_to_none=True)


def measure(name: str, path: str, batch: int, dtype: torch.dtype, iters: int) -> dict:
    from attnzoo.kernels import use_kernels

    model = build(name, path, 1000).cuda().train()
    x = torch.randn(batch, 3, 224, 224, device="cuda")
    y = torch.randint(0, 1000, (batch,), device="cuda")
    backend = {"reference": "torch", "kernel": "triton"}.get(path, "auto")
    with use_kernels(backend):
        try:
            step(model, x, y, dtype)  # warm-up (Triton compiles here)
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            times = []
            for _ in range(iters):
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                step(model, x, y, dtype)
                torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
            peak = (torch.cuda.max_memory_allocated() - base) / 2**20
            result = {"peak_mib": round(peak, 1), "step_ms": round(1e3 * statistics.median(times), 2)}
        except torch.cuda.OutOfMemoryError:
            result = {"peak_mib": None, "step_ms": None, "error": "out of memory"}
    del model, x, y
    torch.cuda.empty_cache()
    return {"model": name, "path": path, "batch": batch, "dtype": str(dtype).removeprefix("torch."), **result}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=["karat_vit_tiny_g3b"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("karat_memory.py measures CUDA memory: run it on a GPU machine")
    rows = [
        measure(name, path, args.batch, DTYPES[args.dtype], args.iters)
        for name in args.model
        for path in ("reference", "kernel", "timm-vit")
    ]
    print(f"# {torch.cuda.get_device_name()} | torch {torch.__version__} | batch {args.batch} | {args.dtype}")
    print(f"{'model':24} {'path':10} {'peak MiB':>10} {'step ms':>9}")
    for r in rows:
        peak = "OOM" if r["peak_mib"] is None else f"{r['peak_mib']:.0f}"
        ms = "-" if r["step_ms"] is None else f"{r['step_ms']:.1f}"
        print(f"{r['model']:24} {r['path']:10} {peak:>10} {ms:>9}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == "__main__":
    main()

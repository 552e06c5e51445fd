"""Halo attention: attnzoo's HaloAttention (Triton on CUDA) vs timm's HaloAttn (unfold + matmul).

Shapes are those of az_halonet26t's attention layers at a 256 (classification) and 800x1344
(detection) input, batch 8 / 2. Reports forward and forward+backward time and peak CUDA memory.
On a machine without a GPU both layers run in torch on the CPU (attnzoo's reference path), which
measures the reference, not the kernel; the table says which backend ran.

usage: python benchmarks/bench_halo_attention.py [--device cuda] [--dtype bf16] [--iters 20]
"""

from __future__ import annotations

import argparse
import time

import torch
from timm.layers.halo_attn import HaloAttn

from attnzoo.kernels import use_kernels, use_triton
from attnzoo.layers import HaloAttention

# (label, batch, channels, H, W, stride, block, halo, heads): halonet26t stage-3/4 attention inputs
SHAPES = [
    ("s3 @256", 8, 256, 16, 16, 1, 8, 2, 8),
    ("s4 @256 (stride 2)", 8, 512, 16, 16, 2, 8, 2, 8),
    ("s3 @800x1344", 2, 256, 56, 88, 1, 8, 2, 8),
    ("s4 @800x1344", 2, 512, 24, 40, 1, 8, 2, 8),
]
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def measure(layer: torch.nn.Module, x: torch.Tensor, backward: bool, iters: int) -> tuple[float, float]:
    """(milliseconds per call, peak MiB on CUDA or nan)."""
    device = x.device.type

    def step() -> None:
        out = layer(x)
        if backward:
            out.float().square().mean().backward()

    step()
    _sync(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    _sync(device)
    ms = (time.perf_counter() - start) * 1e3 / iters
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else float("nan")
    return ms, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    parser.add_argument("--iters", type=int, default=10)
    args = parser.parse_args()
    dtype = DTYPES[args.dtype]
    print(f"torch {torch.__version__}, device {args.device}", end="")
    if args.device == "cuda":
        print(f" ({torch.cuda.get_device_name()})", end="")
    print(f", dtype {args.dtype}")
    print(
        f"{'shape':22} {'pass':8} {'ours backend':12} {'ours ms':>9} {'timm ms':>9} {'speed-up':>8} "
        f"{'ours MiB':>9} {'timm MiB':>9}"
    )
    for label, b, c, h, w, stride, block, halo, heads in SHAPES:
        torch.manual_seed(0)
        ref = HaloAttn(c, c, stride=stride, num_heads=heads, block_size=block, halo_size=halo)
        ours = HaloAttention(c, c, stride=stride, num_heads=heads, block_size=block, halo_size=halo)
        ours.load_state_dict(ref.state_dict())
        ref, ours = (m.to(args.device, dtype) for m in (ref, ours))
        for backward in (False, True):
            x = torch.randn(b, c, h, w, device=args.device, dtype=dtype, requires_grad=backward)
            with use_kernels("auto"):
                backend = "triton" if use_triton(x) else "torch"
                ours_ms, ours_mb = measure(ours, x, backward, args.iters)
            ref_ms, ref_mb = measure(ref, x, backward, args.iters)
            print(
                f"{label:22} {'fwd+bwd' if backward else 'fwd':8} {backend:12} {ours_ms:9.2f} {ref_ms:9.2f} "
                f"{ref_ms / ours_ms:8.2f} {ours_mb:9.1f} {ref_mb:9.1f}"
            )


if __name__ == "__main__":
    main()

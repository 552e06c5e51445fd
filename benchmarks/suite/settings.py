"""The suite's sizes, iteration counts, dtypes and the GPUs' peaks."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

BF16, FP32 = torch.bfloat16, torch.float32
DTYPE_NAMES = {BF16: "bf16", FP32: "fp32"}


# Dense peaks by device name (first match): TFLOP/s for bf16 and tf32 tensor cores and non-tensor fp32,
# and HBM TB/s (NVIDIA data sheets).
PEAKS: tuple[tuple[str, dict[str, float]], ...] = (
    ("H200", {"bf16": 989.0, "tf32": 494.0, "fp32": 67.0, "hbm_tbs": 4.8}),
    ("H100 80GB HBM3", {"bf16": 989.0, "tf32": 494.0, "fp32": 67.0, "hbm_tbs": 3.35}),  # SXM
    ("H100 PCIe", {"bf16": 756.0, "tf32": 378.0, "fp32": 51.0, "hbm_tbs": 2.0}),
)


def device_peaks(device: torch.device) -> dict[str, float] | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peaks for key, peaks in PEAKS if key in name), None)


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
    # The long-sequence InfSA case: (batch, heads, tokens), ViT-B's 12 heads at a 2048 input (16385 tokens).
    long_tokens: tuple[int, int, int] = (1, 12, 16385)


FULL = Settings((("224", (224, 224), 8), ("800x1333", (800, 1333), 2)), 256, 64, 10, 2, True)
QUICK = Settings((("32", (32, 32), 1), ("40x56", (40, 56), 1)), 128, 1, 1, 1, False, long_tokens=(1, 2, 65))


# A warm-up worker's run: every call once, to compile it; an op's shapes are separate tasks (no op has
# more than 4), so that several workers compile them at once.
WARM = replace(FULL, iters=1, warmup=1, split_cases=4)

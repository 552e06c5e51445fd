"""Model rows: training and inference images/s and peak memory of an attnzoo model and its anchor
(same weights)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import anchors
import timm
import torch
import torch.nn.functional as F

import attnzoo
import attnzoo.kernels
from attnzoo.zoo.bench import KernelRecorder
from suite.records import rnd, why
from suite.settings import BF16, QUICK, Settings
from suite.timing import first_call, free_memory, measure


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
) -> tuple[float, float | None, str, dict]:
    """(images/s, peak MiB of the timed steps, kernels, first step) of training steps (SGD) or
    inference, bf16 autocast on CUDA (fp32 on the CPU, where bf16 autocast is slower than fp32 and only
    the code path is checked). Kernels: the attnzoo Triton ops an eager step ran ('torch' for none);
    first step: :func:`~suite.timing.first_call`'s seconds and compile-cache events."""
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

    # The first step, timed apart: compile / autotune happen here. Eager, it also records which attnzoo
    # Triton ops run; compiled, it must not (torch.compile does not compile under a dispatch mode).
    recorder = None if compiled else KernelRecorder()
    with recorder or contextlib.nullcontext():
        first = first_call(step, device)
    kernels = recorder.describe() if recorder else "torch.compile"
    ms, _ = measure(step, device, s.iters, s.warmup)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return s.model_batch * 1e3 / ms, peak, kernels, first


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
    ours_rate, peak, kernels, first = images_per_s(ours, pair, size, train, compiled, device, s)
    row.update(ours_img_s=rnd(ours_rate, 1), ours_mib=rnd(peak, 1), backend=kernels, ours_first_step=first)
    del ours
    free_memory(device)
    if anchor is not None:
        try:
            rate, peak, _, first = images_per_s(anchor, pair, size, train, compiled, device, s)
            row.update(anchor_img_s=rnd(rate, 1), anchor_mib=rnd(peak, 1), anchor_first_step=first)
            row["ratio"] = rnd(ours_rate / rate)
        except Exception as err:  # noqa: BLE001  (recorded: the anchor failed, ours still counts)
            row["status"] = f"anchor error: {why(err)}"
    yield row
    del anchor
    free_memory(device)

"""Model facts: parameters, FLOPs, feature strides and input size, as the CLI, export and benchmarks use them.

FLOPs are always counted on the pure-torch reference kernels: ``FlopCounterMode`` only sees aten ops,
and the reference path is the same math as the Triton kernels, so the count does not depend on the
device the model later runs on.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import timm
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from attnzoo.kernels import use_kernels
from attnzoo.zoo.registry import list_families, list_models

__all__ = [
    "count_gflops",
    "count_params",
    "create_for_size",
    "export_checked_models",
    "feature_strides",
    "param_count",
    "resolve_input_size",
    "smallest_variant_per_family",
]


def count_params(model: nn.Module) -> int:
    """Number of parameters (shared tensors counted once), as papers and timm report them."""
    return sum(p.numel() for p in model.parameters())


def count_gflops(model: nn.Module, input_size: Sequence[int] = (3, 224, 224), batch_size: int = 1) -> float:
    """Forward GFLOPs for ``batch_size`` images of ``input_size`` (C, H, W), on the reference kernels.

    The number is FLOPs / 1e9 exactly as ``torch.utils.flop_counter`` counts them: a multiply-add is
    2 FLOPs (so it is twice the "GMACs" many papers print), and only matmul / conv / SDPA-style ops
    are counted (elementwise ops, norms and softmax are not).
    """
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    x = torch.zeros(batch_size, *input_size, device=device, dtype=dtype)
    was_training = model.training
    model.eval()
    try:
        with use_kernels("torch"), torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 1e9


def feature_strides(model_name: str, model: nn.Module | None = None) -> tuple[int, ...]:
    """Reductions (strides) of the maps ``features_only=True`` returns by default, i.e. what a detector
    or segmenter gets; falls back to ``model.feature_info`` (every tap) if features_only fails."""
    try:
        feats = timm.create_model(model_name, features_only=True)
        return tuple(int(r) for r in feats.feature_info.reduction())
    except Exception:
        info = getattr(model, "feature_info", None) if model is not None else None
        if not info:
            raise
        if hasattr(info, "reduction"):  # a FeatureInfo (features_only model)
            return tuple(int(r) for r in info.reduction())
        return tuple(int(f["reduction"]) for f in info)


def resolve_input_size(model: nn.Module, img_size: int | Sequence[int] | None = None) -> tuple[int, int, int]:
    """(C, H, W) to feed ``model``: its pretrained_cfg input_size, with H and W replaced by ``img_size``."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    chans, height, width = tuple(cfg.get("input_size", (3, 224, 224)))
    if img_size is None:
        return int(chans), int(height), int(width)
    if isinstance(img_size, int):
        return int(chans), img_size, img_size
    h, w = img_size
    return int(chans), int(h), int(w)


def create_for_size(name: str, img_size: int | Sequence[int] | None = None, **kwargs: Any) -> nn.Module:
    """``timm.create_model(name)`` in eval mode, rebuilt for ``img_size`` if its cfg says the size is fixed.

    Models with ``fixed_input_size`` (e.g. learned position embeddings) take the size at construction,
    the timm way (``img_size=``); the others accept any size as they are.
    """
    model = timm.create_model(name, **kwargs)
    if img_size is not None and (getattr(model, "pretrained_cfg", None) or {}).get("fixed_input_size"):
        _, h, w = resolve_input_size(model, img_size)
        model = timm.create_model(name, img_size=(h, w), **kwargs)
    return model.eval()


@functools.cache
def param_count(name: str) -> int:
    """Parameter count of a registered model, built on the meta device (no weight memory) where its
    constructor allows, else on CPU; cached, since the count depends on the name only."""
    try:
        with torch.device("meta"):
            return count_params(timm.create_model(name))
    except Exception:  # some constructors compute on tensors and cannot run on meta
        return count_params(timm.create_model(name))


def smallest_variant_per_family() -> list[str]:
    """Per family (in registration order) the model with the fewest parameters: a cheap smoke set."""
    out = []
    for family in list_families():
        names = list_models(family)
        out.append(min(names, key=lambda n: (param_count(n), n)))
    return out


def export_checked_models() -> list[str]:
    """The models whose ONNX export the test suite checks against onnxruntime: the smallest of each
    family, plus a model whose attention is a different graph in its family (InfViT's pure mode; the
    smallest InfViT is a linear one)."""
    return sorted({*smallest_variant_per_family(), "infvit_pure_tiny_patch16_224"})

"""attnzoo models inside mmpretrain: ``TIMMBackbone(model_name=...)`` in an ``ImageClassifier``.

``import attnzoo.mm`` registers the models with timm (TIMMBackbone calls ``timm.create_model``) and, with
transformers >= 5 installed, switches mmpretrain's multimodal models off before ``mmpretrain.models``
is imported (attnzoo/mm/mmpretrain.py). A few AdamW steps through mmengine's ``train_step`` on one
synthetic batch: the loss is finite and falls, and every trainable backbone parameter gets a finite
gradient. TIMMBackbone always drops timm's pooling, so plain ViTs give tokens unless
``features_only=True``; the default tier runs one hierarchical model whole and one ViT with
``features_only=True``, the slow tier every family's smallest model with ``features_only=True``.
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import pytest
import torch
from mmengine.optim import OptimWrapper
from mmengine.registry import DefaultScope

import attnzoo.mm  # noqa: F401  (before mmpretrain.models: see attnzoo/mm/mmpretrain.py)
from attnzoo.backbones import FAMILIES
from attnzoo.mm.mmpretrain import multimodal_import_breaks
from attnzoo.zoo.facts import smallest_variant_per_family
from tests.helpers.mm_data import falls

from mmpretrain.registry import MODELS  # isort: skip
from mmpretrain.structures import DataSample  # isort: skip

CLASSES = 4


def _batch(size: int) -> dict:
    """One image per class, the class marked by which quadrant is bright (uint8, as a loader gives)."""
    gen = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for label in range(CLASSES):
        img = torch.randint(0, 60, (3, size, size), generator=gen, dtype=torch.uint8)
        y, x = divmod(label, 2)
        half = size // 2
        img[:, y * half : (y + 1) * half, x * half : (x + 1) * half] += 180
        inputs.append(img)
        samples.append(DataSample().set_gt_label(label))
    return dict(inputs=inputs, data_samples=samples)


def _train(name: str, size: int, steps: int, features_only: bool, **kwargs) -> None:
    data = _batch(size)
    backbone = dict(type="TIMMBackbone", model_name=name, features_only=features_only, **kwargs)
    with DefaultScope.overwrite_default_scope("mmpretrain"):
        torch.manual_seed(0)
        probe = MODELS.build(backbone)  # its train() returns None, so no chained .eval()
        probe.eval()
        with torch.no_grad():
            in_channels = probe(torch.zeros(1, 3, size, size))[-1].shape[1]
        model = MODELS.build(
            dict(
                type="ImageClassifier",
                data_preprocessor=dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375]),
                backbone=backbone,
                neck=dict(type="GlobalAveragePooling"),
                head=dict(type="LinearClsHead", num_classes=CLASSES, in_channels=in_channels),
            )
        )
    trainable = {n: p for n, p in model.backbone.named_parameters() if p.requires_grad}
    assert trainable, name
    got_grad: dict[str, bool] = {}  # name -> whether its gradient was finite, at its first step

    def record(name: str):
        def hook(param: torch.Tensor) -> None:
            got_grad.setdefault(name, bool(param.grad.isfinite().all()))

        return hook

    for n, p in trainable.items():
        p.register_post_accumulate_grad_hook(record(n))
    optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-5))  # 1e-4 jumps on Swin
    losses = [model.train_step(data, optim)["loss"].item() for _ in range(steps)]
    assert all(torch.isfinite(torch.tensor(losses))) and falls(losses), (name, losses)
    missing = sorted(set(trainable) - set(got_grad))
    assert not missing, f"{name}: no gradient for {missing[:5]} ({len(missing)} parameters)"
    assert all(got_grad.values()), f"{name}: non-finite gradients"


def test_hierarchical_model_whole():
    _train("inline_pvt_tiny", size=64, steps=5, features_only=False)


def test_vit_features_only():
    _train("az_convit_tiny", size=64, steps=5, features_only=True, img_size=64)


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_features_only(family):
    # Looked up when the test runs: counting every variant's parameters builds them all.
    name = dict(zip(FAMILIES, smallest_variant_per_family(), strict=True))[family]
    _train(name, size=224, steps=5, features_only=True)


@pytest.mark.slow
def test_plain_import_fails_without_the_switch():
    """The reason attnzoo/mm/mmpretrain.py exists: with the installed transformers, a plain
    ``import mmpretrain.models`` fails exactly when ``multimodal_import_breaks()`` says it does."""
    proc = subprocess.run(
        [sys.executable, "-c", "import mmpretrain.models"], capture_output=True, text=True, timeout=300
    )
    breaks = multimodal_import_breaks()
    assert (proc.returncode != 0) == breaks, (metadata.version("transformers"), proc.stderr[-2000:])
    if breaks:
        assert "NoneType takes no arguments" in proc.stderr, proc.stderr[-2000:]

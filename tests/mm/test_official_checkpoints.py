"""Official detector / segmentor checkpoints through mmengine's ``load_checkpoint`` (what ``load_from``
runs): the backbone in the official code's layout (``backbone.<official key>``) lands in
AttnZooBackbone's ``backbone.model.*``, the neck / head keys load as they are."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.hub import get_config
from mmengine.registry import DefaultScope
from mmengine.runner.checkpoint import load_checkpoint

import attnzoo
from attnzoo.mm import AttnZooBackbone
from tests.helpers.mm_models import narrow_mask_rcnn
from tests.helpers.parity import load_golden, official_state_dict

# model -> the dense golden whose manifest lists the official det backbone's keys and shapes
# (BiFormer's keys are attnzoo's; MALA's official layers.i.blocks.j / extra_norms.i.norm are renamed).
CASES = {"biformer_tiny": "biformer_tiny_dense", "mala_t": "mala_t_det"}


def _mask_rcnn(model_name: str, widths: list[int]) -> torch.nn.Module:
    cfg = get_config("mmdet::_base_/models/mask-rcnn_r50_fpn.py").model
    cfg.backbone = dict(type="AttnZooBackbone", model_name=model_name, dense_form="det", drop_path_rate=0.0)
    cfg.neck.update(in_channels=widths)
    narrow_mask_rcnn(cfg, 16)  # narrow neck and heads: the keys are what counts
    with DefaultScope.overwrite_default_scope("mmdet"):
        return MODELS.build(cfg)


def _official_backbone(golden: dict) -> dict[str, torch.Tensor]:
    """The official det backbone's state dict (float32, as released), BatchNorm counters included."""
    state = {k: v.float() for k, v in official_state_dict(golden).items()}
    counters = {
        k.replace("running_mean", "num_batches_tracked"): torch.tensor(7)
        for k in state
        if k.endswith("running_mean")
    }
    return {**state, **counters}


@pytest.mark.parametrize("model_name", list(CASES))
def test_load_from_an_official_mask_rcnn_checkpoint(tmp_path: Path, model_name: str):
    golden = load_golden(CASES[model_name])
    torch.manual_seed(0)
    detector = _mask_rcnn(model_name, [shape[1] for shape in golden["output_shapes"]])
    backbone = detector.backbone.model.model
    official = _official_backbone(golden)
    heads = {
        k: v + torch.rand_like(v) if v.is_floating_point() else v + 3
        for k, v in detector.state_dict().items()
        if not k.startswith("backbone.")
    }
    assert any(k.startswith("neck.") for k in heads) and any(
        k.startswith("roi_head.mask_head") for k in heads
    )
    state = {**{f"backbone.{k}": v for k, v in official.items()}, **heads}
    path = tmp_path / "mask_rcnn_official.pth"
    torch.save({"meta": dict(mmdet_version="2.28.2", epoch=12), "state_dict": state}, path)

    # strict: every key of the file finds its place and every key of the detector is filled
    load_checkpoint(detector, str(path), map_location="cpu", strict=True)

    loaded = detector.state_dict()
    for key, value in heads.items():
        assert torch.equal(loaded[key], value), key
    expected = attnzoo.convert_official(model_name, official, backbone)
    assert expected.keys() == backbone.state_dict().keys()
    for key, value in expected.items():
        assert torch.equal(loaded[f"backbone.model.model.{key}"], value), key
    # a checkpoint of the detector itself (AttnZooBackbone's keys) loads as it is
    detector.load_state_dict(loaded, strict=True)


def test_load_from_an_official_upernet_checkpoint(tmp_path: Path):
    """The official BiFormer segmentor (UperNet + FCN auxiliary head; its backbone has the det form's
    modules, n_win 8) through mmseg: ``load_from`` fills the seg form and both heads."""
    from mmseg.registry import MODELS as SEG_MODELS

    golden = load_golden("biformer_tiny_dense")
    widths = [shape[1] for shape in golden["output_shapes"]]
    cfg = get_config("mmseg::_base_/models/upernet_r50.py").model
    cfg.pretrained = None  # the base's ResNet weights, which mmseg would hand the backbone
    cfg.backbone = dict(
        type="AttnZooBackbone", model_name="biformer_tiny", dense_form="seg", drop_path_rate=0.0
    )
    bn = dict(type="BN", requires_grad=True)
    cfg.decode_head.update(in_channels=widths, channels=16, num_classes=5, norm_cfg=bn)
    cfg.auxiliary_head.update(in_channels=widths[2], channels=8, num_classes=5, norm_cfg=bn)
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope("mmseg"):
        segmentor = SEG_MODELS.build(cfg)
    official = _official_backbone(golden)
    heads = {
        k: v + torch.rand_like(v) if v.is_floating_point() else v + 3
        for k, v in segmentor.state_dict().items()
        if not k.startswith("backbone.")
    }
    assert any(k.startswith("auxiliary_head.") for k in heads)
    path = tmp_path / "upernet_official.pth"
    state = {**{f"backbone.{k}": v for k, v in official.items()}, **heads}
    torch.save({"meta": dict(mmseg_version="0.30.0", iter=160000), "state_dict": state}, path)

    load_checkpoint(segmentor, str(path), map_location="cpu", strict=True)

    loaded = segmentor.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in heads.items())
    backbone = segmentor.backbone.model.model
    expected = attnzoo.convert_official("biformer_tiny", official, backbone)
    assert expected.keys() == backbone.state_dict().keys()
    assert all(torch.equal(loaded[f"backbone.model.model.{k}"], v) for k, v in expected.items())


def test_a_checkpoint_of_another_form_fails_naming_the_keys():
    """The det backbone's output norms have no place in the classifier's features: a clear error, the
    backbone untouched."""
    official = _official_backbone(load_golden("biformer_tiny_dense"))
    backbone = AttnZooBackbone("biformer_tiny", drop_path_rate=0.0)
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    with pytest.raises(
        ValueError,
        match=r"(?s)AttnZooBackbone\('biformer_tiny', dense_form=None\).*unexpected.*extra_norms\.0",
    ):
        backbone.load_state_dict(official, strict=False)
    assert all(torch.equal(v, before[k]) for k, v in backbone.state_dict().items())

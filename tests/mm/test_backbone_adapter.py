"""attnzoo.mm.AttnZooBackbone: registry builds, shapes, freezing, pretrained files, tiny det / seg runs."""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path

import pytest
import timm
import torch
from mmdet.registry import MODELS as DET_MODELS
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmseg.registry import MODELS as SEG_MODELS

import attnzoo
from attnzoo.backbones import FAMILIES, UnknownModelError
from attnzoo.mm import AttnZooBackbone
from attnzoo.zoo.facts import smallest_variant_per_family
from attnzoo.zoo.registry import family_of
from tests.helpers.mm_batches import det_batch as _det_batch
from tests.helpers.mm_batches import seg_batch as _seg_batch
from tests.helpers.mm_models import narrow_mask_rcnn

ROOT = Path(__file__).resolve().parents[2]

# Parametrised over the registry: a new family is covered with no new test code.
FAMILY_NAMES = list(FAMILIES)
_BUILT: dict[tuple, torch.nn.Module] = {}


@pytest.fixture
def build_once(monkeypatch):
    """``timm.create_model`` built once per arguments, then copied: a ``frozen_stages`` sweep over a
    12-block ViT costs one model build, not fourteen.

    The copies share parameter storage (weight init and cloning dominate the cost on CPU) but get their
    own ``Parameter`` objects, so ``requires_grad`` and ``.grad`` are per copy; buffers are copied.
    """
    create = timm.create_model

    def cached(name, **kwargs):
        key = (name, tuple(sorted(kwargs.items())))
        if key not in _BUILT:
            _BUILT[key] = create(name, **kwargs)
        model = _BUILT[key]
        shared = {id(p): torch.nn.Parameter(p.detach(), p.requires_grad) for p in model.parameters()}
        return copy.deepcopy(model, shared)

    monkeypatch.setattr(timm, "create_model", cached)


def _smallest(family):
    """The family's smallest model; looked up when a test runs, not at collection (counting every
    variant's parameters builds them all)."""
    return dict(zip(FAMILIES, smallest_variant_per_family(), strict=True))[family]


def _build(scope, cfg):
    """Build a model dict the way a runner with ``default_scope=scope`` does."""
    with DefaultScope.overwrite_default_scope(scope):
        return {"mmdet": DET_MODELS, "mmseg": SEG_MODELS}[scope].build(cfg)


def _backbone(registry=DET_MODELS, **kwargs):
    cfg = dict(type="AttnZooBackbone", drop_path_rate=0.0)
    cfg.update(kwargs)
    return registry.build(cfg)


def _born_frozen(backbone):
    """Parameters the model is built with frozen (Sparsifiner's connectivity predictors, which no task
    loss reaches): not the adapter's doing, so left out of what it froze."""
    fresh = _backbone(model_name=backbone.model_name)
    return {n for n, p in fresh.named_parameters() if not p.requires_grad}


def _frozen(backbone):
    """The parameters the adapter froze (``requires_grad=False``, less those born frozen)."""
    return {n for n, p in backbone.named_parameters() if not p.requires_grad} - _born_frozen(backbone)


def _batchnorms(module):
    return [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def test_registered_in_both_registries():
    assert DET_MODELS.get("AttnZooBackbone") is AttnZooBackbone
    assert SEG_MODELS.get("AttnZooBackbone") is AttnZooBackbone


# ------------------------------------------------------------- every family, from its record
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_default_out_indices_come_from_the_family_record(family, build_once):
    name = _smallest(family)
    torch.manual_seed(0)
    backbone = _backbone(SEG_MODELS, model_name=name).eval()
    info = backbone.model.feature_info.info
    declared = FAMILIES[family].dense.out_indices
    assert backbone.out_indices == tuple(i % len(info) for i in declared)
    assert backbone.out_channels == tuple(info[i]["num_chs"] for i in backbone.out_indices)
    assert backbone.strides == tuple(info[i]["reduction"] for i in backbone.out_indices)
    h, w = 61, 93  # odd, non-square, not a multiple of any stride or window
    with torch.no_grad():
        outs = backbone(torch.randn(2, 3, h, w))
    assert isinstance(outs, tuple) and len(outs) == len(declared)
    for out, c, s in zip(outs, backbone.out_channels, backbone.strides, strict=True):
        assert out.shape == (2, c, math.ceil(h / s), math.ceil(w / s))
        assert torch.isfinite(out).all()


def _group_matcher_stem(name, names):
    """The parameters (of ``names``) the model's own ``group_matcher(coarse=True)`` calls its stem.

    An independent statement of the stem: timm's layer-decay grouping, which the timm battery checks. The
    feature wrappers rename parameters (the getter nests the model as ``model``; the list wrapper turns
    a flattened Sequential's ``stem.conv1`` into ``stem_conv1``), so both spellings are tried.
    """
    stem = re.compile(timm.create_model(name).group_matcher(coarse=True)["stem"])
    own = {n: n.removeprefix("model.").removeprefix("model.") for n in names}
    return {n for n, o in own.items() if stem.match(o) or stem.match(o.replace("_", ".", 1))}


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_frozen_stages_freeze_the_stem_then_one_more_stage_each(family, build_once):
    name = _smallest(family)
    fresh = _backbone(model_name=name)
    everything = {n for n, _ in fresh.named_parameters()} - _born_frozen(fresh)
    frozen = _frozen(_backbone(model_name=name, frozen_stages=0))
    assert frozen and frozen == _group_matcher_stem(name, everything)
    stages = 0
    while frozen != everything:
        stages += 1
        more = _frozen(_backbone(model_name=name, frozen_stages=stages))
        assert frozen < more, f"frozen_stages={stages} freezes no more than {stages - 1}"
        frozen = more
    info = _backbone(model_name=name).model.feature_info.info
    assert stages == len(info) - FAMILIES[family].dense.first_stage
    with pytest.raises(ValueError, match=rf"frozen_stages={stages + 1} but {name} has {stages} stages"):
        _backbone(model_name=name, frozen_stages=stages + 1)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_frozen_modules_stay_in_eval_and_get_no_gradients(family, build_once):
    name = _smallest(family)
    torch.manual_seed(0)
    backbone = _backbone(model_name=name, frozen_stages=1).train()
    frozen, born = _frozen(backbone), _born_frozen(backbone)
    assert backbone.training
    for module_name, module in backbone.named_modules():
        params = {f"{module_name}.{n}" for n, _ in module.named_parameters()} - born
        if params:  # eval iff all its parameters are frozen
            assert module.training != (params <= frozen), module_name
    sum(out.sum() for out in backbone(torch.randn(1, 3, 64, 64))).backward()
    for param_name, param in backbone.named_parameters():
        assert (param.grad is None) == (param_name in frozen | born), param_name


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_norm_eval_keeps_every_batchnorm_in_eval(family, build_once):
    name = _smallest(family)
    backbone = _backbone(model_name=name, norm_eval=True).train()
    bns = _batchnorms(backbone)
    assert backbone.training and not any(m.training for m in bns)
    stats = [m.running_mean.clone() for m in bns]
    backbone(torch.randn(1, 3, 64, 64))
    assert all(torch.equal(a, m.running_mean) for a, m in zip(stats, bns, strict=True))
    assert all(m.training for m in _batchnorms(_backbone(model_name=name).train()))


# ------------------------------------------------------------- exact sets, pinned per family
def test_default_out_indices_biformer_and_halonet(build_once):
    assert _backbone(model_name="az_halonet_h0").out_indices == (1, 2, 3, 4)  # index 0: the stride-2 stem
    assert _backbone(model_name="biformer_tiny").strides == (4, 8, 16, 32)


def test_frozen_stages_biformer(build_once):
    backbone = _backbone(model_name="biformer_tiny", frozen_stages=2)
    names = {n for n, _ in backbone.named_parameters()}
    prefixes = ("model.model.downsample_layers.0.", "model.model.downsample_layers.1.")
    prefixes += ("model.model.stages.0.", "model.model.stages.1.")
    assert _frozen(backbone) == {n for n in names if n.startswith(prefixes)}
    assert any(n.startswith("model.model.downsample_layers.2.") for n in names - _frozen(backbone))
    # stem only; everything
    assert _frozen(_backbone(model_name="biformer_tiny", frozen_stages=0)) == {
        n for n in names if n.startswith("model.model.downsample_layers.0.")
    }
    assert _frozen(_backbone(model_name="biformer_tiny", frozen_stages=4)) == names


def test_frozen_stages_halonet_list_wrapper(build_once):
    backbone = _backbone(model_name="az_halonet_h0", frozen_stages=1)
    names = {n for n, _ in backbone.named_parameters()}
    assert _frozen(backbone) == {n for n in names if n.startswith(("model.stem_", "model.stages_0."))}
    assert _frozen(_backbone(model_name="az_halonet_h0", frozen_stages=0)) == {
        n for n in names if n.startswith("model.stem_")
    }


def test_frozen_stages_plain_vit_counts_blocks(build_once):
    backbone = _backbone(model_name="az_convit_tiny", out_indices=(3, 7, 11), frozen_stages=3)
    assert backbone.out_indices == (3, 7, 11) and backbone.strides == (16, 16, 16)
    stem = ("model.model.patch_embed.", "model.model.cls_token", "model.model.pos_embed")
    blocks = tuple(f"model.model.blocks.{i}." for i in range(3))
    names = {n for n, _ in backbone.named_parameters()}
    assert _frozen(backbone) == {n for n in names if n.startswith(stem + blocks)}


def test_timm_models_without_a_family_record_use_the_generic_rule(build_once):
    """Not attnzoo's: the last four levels; stages at stride >= 4, parameters by registration order."""
    resnet = _backbone(model_name="resnet18", frozen_stages=1)
    assert resnet.out_indices == (1, 2, 3, 4) and resnet.strides == (4, 8, 16, 32)
    names = {n for n, _ in resnet.named_parameters()}
    assert _frozen(resnet) == {
        n for n in names if n.startswith(("model.conv1.", "model.bn1.", "model.layer1."))
    }
    vit = _backbone(model_name="vit_tiny_patch16_224", frozen_stages=0)
    assert vit.out_indices == (8, 9, 10, 11)
    assert _frozen(vit) == {f"model.model.{n}" for n in ("cls_token", "pos_embed")} | {
        n for n, _ in vit.named_parameters() if n.startswith("model.model.patch_embed.")
    }
    assert _frozen(_backbone(model_name="vit_tiny_patch16_224", frozen_stages=12)) == {
        n for n, _ in vit.named_parameters()
    }


def test_pretrained_from_local_file_biformer(tmp_path):
    torch.manual_seed(1)
    official = timm.create_model("biformer_tiny").state_dict()  # the official checkpoints share our keys
    path = tmp_path / "biformer_tiny_in1k.pth"
    torch.save({"model": official, "epoch": 300}, path)  # laid out like the official release
    torch.manual_seed(2)
    backbone = _backbone(model_name="biformer_tiny", pretrained=str(path))
    loaded = backbone.model.model.state_dict()
    assert loaded and all(torch.equal(v, official[k]) for k, v in loaded.items())
    # init_weights (called by every runner) leaves the loaded weights alone
    backbone.init_weights()
    assert all(torch.equal(v, official[k]) for k, v in backbone.model.model.state_dict().items())


def test_init_cfg_pretrained_loads_an_adapter_checkpoint(tmp_path):
    torch.manual_seed(4)
    source = _backbone(model_name="az_halonet_h0")
    path = tmp_path / "backbone.pth"
    torch.save({"state_dict": source.state_dict()}, path)
    torch.manual_seed(5)
    backbone = _backbone(model_name="az_halonet_h0", init_cfg=dict(type="Pretrained", checkpoint=str(path)))
    assert not torch.equal(backbone.model.stem_conv1.conv.weight, source.model.stem_conv1.conv.weight)
    backbone.init_weights()
    for key, value in source.state_dict().items():
        assert torch.equal(backbone.state_dict()[key], value), key


def test_pretrained_from_local_file_converts_official_keys(tmp_path):
    # timm's own convit_tiny is the official ConViT; its state dict goes through attnzoo's converter
    torch.manual_seed(3)
    official = timm.create_model("convit_tiny").state_dict()
    path = tmp_path / "convit_tiny.pth"
    torch.save(official, path)
    backbone = _backbone(model_name="az_convit_tiny", out_indices=(11,), pretrained=str(path))
    expected = attnzoo.convert_official("az_convit_tiny", official)
    for key, value in backbone.model.model.state_dict().items():
        if key in expected:
            assert torch.equal(value, expected[key]), key
    assert torch.equal(backbone.model.model.patch_embed.proj.weight, official["patch_embed.proj.weight"])


def test_bad_arguments_give_clear_errors():
    with pytest.raises(UnknownModelError, match="unknown model 'biformer_tinyy'; did you mean biformer_tiny"):
        _backbone(model_name="biformer_tinyy")
    with pytest.raises(ValueError, match=r"az_halonet_h0.*out_indices=\(0, 7\).*out of range"):
        _backbone(model_name="az_halonet_h0", out_indices=(0, 7))
    with pytest.raises(ValueError, match=r"biformer_tiny.*out_indices=\(0, 7\).*out of range"):
        _backbone(model_name="biformer_tiny", out_indices=(0, 7))
    with pytest.raises(ValueError, match="repeats"):
        _backbone(model_name="biformer_tiny", out_indices=(1, 1))
    with pytest.raises(TypeError, match="out_indices"):
        _backbone(model_name="biformer_tiny", out_indices=3)
    with pytest.raises(ValueError, match="frozen_stages=5 but biformer_tiny has 4 stages"):
        _backbone(model_name="biformer_tiny", frozen_stages=5)


# ------------------------------------------------------------------------------- tiny training runs
def _steps(model, data, n=5, lr=0.01):
    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=0.9)
    losses = []
    for _ in range(n):
        batch = model.data_preprocessor(data, training=True)
        loss, _ = model.parse_losses(model(**batch, mode="loss"))
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_retinanet_biformer_trains_a_few_steps():
    cfg = Config.fromfile(ROOT / "configs/det/retinanet_biformer_tiny_fpn_1x_coco.py")
    model_cfg = cfg.model
    model_cfg.backbone.update(pretrained=False, drop_path_rate=0.0, n_win=4)
    model_cfg.neck.update(out_channels=32)
    model_cfg.bbox_head.update(num_classes=3, in_channels=32, feat_channels=32, stacked_convs=1)
    torch.manual_seed(0)
    model = _build("mmdet", model_cfg)
    model.init_weights()
    losses = _steps(model, _det_batch(), n=8)  # the det form keeps its BatchNorms in eval (norm_eval)
    assert losses[-1] < 0.9 * losses[0], losses


def test_upernet_biformer_trains_a_few_steps():
    bn = dict(type="BN", requires_grad=True)
    model_cfg = dict(
        type="EncoderDecoder",
        data_preprocessor=dict(
            type="SegDataPreProcessor",
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            bgr_to_rgb=True,
            size=(64, 96),
            pad_val=0,
            seg_pad_val=255,
        ),
        backbone=dict(type="AttnZooBackbone", model_name="biformer_tiny", drop_path_rate=0.0, n_win=4),
        decode_head=dict(
            type="UPerHead",
            in_channels=[64, 128, 256, 512],
            in_index=[0, 1, 2, 3],
            pool_scales=(1, 2),
            channels=32,
            num_classes=4,
            norm_cfg=bn,
            loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
        ),
        train_cfg=dict(),
        test_cfg=dict(mode="whole"),
    )
    torch.manual_seed(0)
    model = _build("mmseg", model_cfg)
    model.init_weights()
    losses = _steps(model, _seg_batch(), lr=0.05)
    assert losses[-1] < 0.9 * losses[0], losses


# OverLoCK's dense forms with one block per stage / Focus stage: the family's layout (its widths, the
# Overview context, h_proj) at a fraction of the CPU time of a full OverLoCK-XT.
_SHALLOW_OVERLOCK = dict(depth=(1, 1, 1, 1), sub_depth=(1, 1))
# Narrower still, for the training runs: widths 16 / 32 / 64 + 16 / 64 + 16.
_TINY_OVERLOCK = dict(
    _SHALLOW_OVERLOCK, embed_dim=(16, 32, 64, 64), sub_num_heads=(2, 2), kernel_size=(7,) * 4
)
_TINY_OVERLOCK_WIDTHS = [16, 32, 80, 80]


def _tiny_overlock(backbone_cfg):
    backbone_cfg.update(model_name="overlock_xt", pretrained=False, drop_path_rate=0.0, **_TINY_OVERLOCK)


def _every_backbone_parameter_gets_a_gradient(model, extra=()):
    """No unused backbone parameters (DDP would need ``find_unused_parameters``), and the dense form's
    own modules (its output norms, the family record's ``output_norms``; ``extra`` name prefixes, e.g.
    OverLoCK's h_proj) learn from the task loss."""
    named = dict(model.backbone.named_parameters())
    assert not [n for n, p in named.items() if p.grad is None]
    norms = re.compile(FAMILIES[family_of(model.backbone.model_name)].dense.output_norms)
    extras = {
        n: p
        for n, p in named.items()
        if norms.match(n.removeprefix("model.model."))
        or n.startswith(tuple(f"model.model.{e}" for e in extra))
    }
    assert extras and not [n for n, p in extras.items() if not p.grad.abs().sum() > 0]


def test_mask_rcnn_overlock_trains_a_few_steps():
    """configs/det/mask-rcnn_overlock_t_fpn_1x_coco.py with a tiny OverLoCK (det form), neck and heads."""
    cfg = Config.fromfile(ROOT / "configs/det/mask-rcnn_overlock_t_fpn_1x_coco.py")
    model_cfg = cfg.model
    assert model_cfg.backbone.dense_form == "det"
    _tiny_overlock(model_cfg.backbone)
    model_cfg.neck.update(in_channels=_TINY_OVERLOCK_WIDTHS)
    narrow_mask_rcnn(model_cfg, 32, fc_width=64, num_classes=3)
    torch.manual_seed(0)
    model = _build("mmdet", model_cfg)
    model.init_weights()
    assert model.backbone.out_channels == tuple(_TINY_OVERLOCK_WIDTHS)
    losses = _steps(model, _det_batch(masks=True))
    _every_backbone_parameter_gets_a_gradient(model, extra=("h_proj.",))
    assert losses[-1] < 0.9 * losses[0], losses


def test_upernet_overlock_trains_a_few_steps():
    """configs/seg/upernet_overlock_t_512x512_160k_ade20k.py (UperNet + the FCN auxiliary head on level 2)
    with a tiny OverLoCK (seg form), narrow heads, plain BN for the heads' SyncBN, 64 x 96 inputs."""
    bn = dict(type="BN", requires_grad=True)
    model_cfg = Config.fromfile(ROOT / "configs/seg/upernet_overlock_t_512x512_160k_ade20k.py").model
    assert model_cfg.backbone.dense_form == "seg" and model_cfg.auxiliary_head.in_index == 2
    _tiny_overlock(model_cfg.backbone)
    model_cfg.data_preprocessor.update(size=(64, 96))
    model_cfg.decode_head.update(
        in_channels=_TINY_OVERLOCK_WIDTHS, pool_scales=(1, 2), channels=32, num_classes=4, norm_cfg=bn
    )
    model_cfg.auxiliary_head.update(
        in_channels=_TINY_OVERLOCK_WIDTHS[2], channels=16, num_classes=4, norm_cfg=bn
    )
    torch.manual_seed(0)
    model = _build("mmseg", model_cfg)
    model.init_weights()
    # 8 steps: after 5 the loss had fallen only 9.3% on a fresh 2026-11-27 install (0.68x after 8)
    losses = _steps(model, _seg_batch(), n=8, lr=0.05)
    _every_backbone_parameter_gets_a_gradient(model)
    assert losses[-1] < 0.9 * losses[0], losses


def test_overlock_dense_forms():
    """``dense_form`` picks the family's official dense backbone; unknown forms fail naming the known."""
    torch.manual_seed(0)
    det = _backbone(model_name="overlock_xt", dense_form="det", **_SHALLOW_OVERLOCK).eval()
    seg = _backbone(model_name="overlock_xt", dense_form="seg", **_SHALLOW_OVERLOCK).eval()
    widths = (56, 112, 256 + 336 // 4, 336 + 336 // 4)  # C1, C2, C3 + C4 / 4, C4 + C4 / 4 (XT)
    x = torch.randn(1, 3, 64, 96)
    for backbone in (det, seg):
        assert backbone.out_indices == (0, 1, 2, 3) and backbone.strides == (4, 8, 16, 32)
        assert backbone.out_channels == widths
        assert not any(n.startswith("model.model.head.") for n, _ in backbone.named_parameters())
        with torch.no_grad():
            outs = backbone(x)
        assert [tuple(o.shape) for o in outs] == [
            (1, c, 64 // s, 96 // s) for c, s in zip(widths, (4, 8, 16, 32), strict=True)
        ]
        assert all(torch.isfinite(o).all() for o in outs)
    assert len(det.model.model.extra_norm) == 5 and isinstance(det.model.model.h_proj, torch.nn.Module)
    assert len(seg.model.model.extra_norm) == 4 and not hasattr(seg.model.model, "h_proj")
    assert not any(n.startswith("model.model.h_proj.") for n, _ in seg.named_parameters())
    # without a dense form: the classifier's own features, no output norms
    assert not any(
        "extra_norm" in n
        for n, _ in _backbone(model_name="overlock_xt", **_SHALLOW_OVERLOCK).named_parameters()
    )
    with pytest.raises(ValueError, match=r"overlock_xt has no dense form 'cls' \(its forms: 'det', 'seg'\)"):
        _backbone(model_name="overlock_xt", dense_form="cls")
    with pytest.raises(
        ValueError, match=r"biformer_tiny has no dense form 'cls' \(its forms: 'det', 'seg'\)"
    ):
        _backbone(model_name="biformer_tiny", dense_form="cls")
    with pytest.raises(ValueError, match=r"resnet18 has no dense form 'det' \(its forms: none\)"):
        _backbone(model_name="resnet18", dense_form="det")  # a timm model without a family record


def test_overlock_output_norms_freeze_with_their_stage():
    """frozen_stages=k freezes the dense form's output norms of stages < k (mmdet's Swin rule); the
    Overview context's norm and h_proj go with the last stage."""
    for k in (1, 3, 4):
        backbone = _backbone(model_name="overlock_xt", dense_form="det", frozen_stages=k, **_SHALLOW_OVERLOCK)
        frozen = {n.split(".")[3] for n in _frozen(backbone) if n.startswith("model.model.extra_norm.")}
        assert frozen == {str(i) for i in range(k)} | ({"4"} if k == 4 else set()), (k, frozen)
        h_proj = [
            p.requires_grad for n, p in backbone.named_parameters() if n.startswith("model.model.h_proj.")
        ]
        assert h_proj and all(h_proj) == (k < 4)  # trainable unless the last stage is frozen


def test_overlock_dense_form_starts_from_the_imagenet_checkpoint(tmp_path):
    """What ``pretrained=True`` does in the OverLoCK configs: the ImageNet classifier checkpoint (official
    layout ``{'model': ...}``) into the det form; its head stays behind and only the form's own modules
    (output norms, h_proj) keep their fresh init, as with the official code's non-strict load."""
    torch.manual_seed(8)
    official = timm.create_model("overlock_xt", **_SHALLOW_OVERLOCK).state_dict()
    path = tmp_path / "overlock_xt_in1k_224.pth"
    torch.save({"model": official}, path)
    backbone = _backbone(
        model_name="overlock_xt", dense_form="det", pretrained=str(path), **_SHALLOW_OVERLOCK
    )
    loaded = backbone.model.model.state_dict()
    assert {k for k in loaded if k not in official} == {
        k for k in loaded if k.startswith(("extra_norm.", "h_proj."))
    }
    assert all(torch.equal(v, official[k]) for k, v in loaded.items() if k in official)


@pytest.mark.parametrize(
    ("form", "heads"),
    [
        (
            "det",
            (
                "neck.lateral_convs.0.conv.weight",
                "rpn_head.rpn_conv.weight",
                "roi_head.mask_head.conv_logits.bias",
            ),
        ),
        ("seg", ("decode_head.conv_seg.weight", "auxiliary_head.conv_seg.weight")),
    ],
)
def test_overlock_loads_an_official_dense_checkpoint(tmp_path, form, heads):
    """An official Mask R-CNN / UperNet checkpoint (mmdet / mmseg layout: ``state_dict`` with
    ``backbone.*`` and the neck / heads, plus ``meta``) through ``pretrained=<file>``: the backbone gets
    the ``backbone.*`` tensors (parameters and BN buffers), the rest is left behind."""
    torch.manual_seed(6)
    official = timm.create_model("overlock_xt", dense_outputs=form, num_classes=0, **_SHALLOW_OVERLOCK)
    official = {
        k: v + 0.01 * torch.rand_like(v) if v.is_floating_point() else v + 3
        for k, v in official.state_dict().items()
    }
    state = {f"backbone.{k}": v for k, v in official.items()}
    state.update({key: torch.randn(4, 4) for key in heads})
    meta = dict(
        mmdet_version="2.28.2", epoch=12, iter=88000, CLASSES=("person", "bicycle"), config="model = dict()"
    )
    path = tmp_path / f"official_{form}.pth"
    torch.save({"meta": meta, "state_dict": state}, path)
    torch.manual_seed(7)
    backbone = _backbone(model_name="overlock_xt", dense_form=form, pretrained=str(path), **_SHALLOW_OVERLOCK)
    loaded = backbone.model.model.state_dict()
    assert loaded.keys() == official.keys()
    assert all(torch.equal(v, official[k]) for k, v in loaded.items())
    backbone.init_weights()  # called by every runner: leaves the loaded weights alone
    assert all(torch.equal(v, official[k]) for k, v in backbone.model.model.state_dict().items())
    if form == "det":  # a detector's backbone has h_proj and a fifth norm, which the seg form lacks
        with pytest.raises(ValueError, match=r"unexpected keys.*(extra_norm\.4|h_proj)"):
            _backbone(model_name="overlock_xt", dense_form="seg", pretrained=str(path), **_SHALLOW_OVERLOCK)


def test_plain_vit_detector_through_a_pyramid_neck():
    """Stride-16-only models (ConViT, InfViT): mmseg's Feature2Pyramid makes strides 4-32, then FPN."""
    bn = dict(type="BN", requires_grad=True)
    cfg = Config.fromfile(ROOT / "configs/det/retinanet_biformer_tiny_fpn_1x_coco.py").model
    cfg.backbone = dict(type="AttnZooBackbone", model_name="az_convit_tiny", out_indices=(2, 5, 8, 11))
    cfg.neck = [
        dict(type="mmseg.Feature2Pyramid", embed_dim=192, rescales=[4, 2, 1, 0.5], norm_cfg=bn),
        dict(
            type="FPN",
            in_channels=[192] * 4,
            out_channels=32,
            start_level=1,
            add_extra_convs="on_input",
            num_outs=5,
        ),
    ]
    cfg.bbox_head.update(num_classes=3, in_channels=32, feat_channels=32, stacked_convs=1)
    torch.manual_seed(0)
    model = _build("mmdet", cfg)
    model.init_weights()
    feats = model.extract_feat(torch.randn(1, 3, 96, 128))
    assert [tuple(f.shape[-2:]) for f in feats] == [(12, 16), (6, 8), (3, 4), (2, 2), (1, 1)]
    losses = _steps(model, _det_batch(), n=2)
    assert all(math.isfinite(v) for v in losses)


# MALA with one block per stage and narrow widths (head_dim 16: RoPE needs a multiple of 4).
_TINY_MALA = dict(depths=(1, 1, 1, 1), embed_dims=(16, 32, 32, 64), num_heads=(1, 2, 2, 4))


def _tiny_mala(backbone_cfg):
    backbone_cfg.update(model_name="mala_t", pretrained=False, drop_path_rate=0.0, **_TINY_MALA)


def test_mask_rcnn_mala_trains_a_few_steps():
    """configs/det/mask-rcnn_mala_t_fpn_1x_coco.py with a tiny MALA (det form: LayerNorm'd stage
    outputs), narrow neck and heads."""
    model_cfg = Config.fromfile(ROOT / "configs/det/mask-rcnn_mala_t_fpn_1x_coco.py").model
    assert model_cfg.backbone.dense_form == "det"
    _tiny_mala(model_cfg.backbone)
    widths = list(_TINY_MALA["embed_dims"])
    model_cfg.neck.update(in_channels=widths)
    narrow_mask_rcnn(model_cfg, 32, fc_width=64, num_classes=3)
    torch.manual_seed(0)
    model = _build("mmdet", model_cfg)
    model.init_weights()
    assert model.backbone.out_channels == tuple(widths)
    losses = _steps(model, _det_batch(masks=True))
    _every_backbone_parameter_gets_a_gradient(model)
    assert losses[-1] < 0.9 * losses[0], losses


def test_semantic_fpn_mala_trains_a_few_steps():
    """configs/seg/fpn_mala_t_512x512_80k_ade20k.py (Semantic FPN) with a tiny MALA (seg form), plain BN
    for the head's SyncBN, 64 x 96 inputs."""
    model_cfg = Config.fromfile(ROOT / "configs/seg/fpn_mala_t_512x512_80k_ade20k.py").model
    assert model_cfg.backbone.dense_form == "seg"
    _tiny_mala(model_cfg.backbone)
    model_cfg.data_preprocessor.update(size=(64, 96))
    model_cfg.neck.update(in_channels=list(_TINY_MALA["embed_dims"]), out_channels=32)
    model_cfg.decode_head.update(
        in_channels=[32] * 4, channels=16, num_classes=4, norm_cfg=dict(type="BN", requires_grad=True)
    )
    torch.manual_seed(0)
    model = _build("mmseg", model_cfg)
    model.init_weights()
    losses = _steps(model, _seg_batch(), lr=0.05)
    _every_backbone_parameter_gets_a_gradient(model)
    assert losses[-1] < 0.9 * losses[0], losses


@pytest.mark.parametrize("family", [f for f in FAMILY_NAMES if FAMILIES[f].dense.output_norms])
def test_dense_form_output_norms_freeze_with_their_stage(family):
    """frozen_stages=k freezes a dense form's output norms of stages < k (mmdet's Swin rule; a norm
    numbered beyond the last stage goes with the last), for every family whose record declares them."""
    layout = FAMILIES[family].dense
    name, form = _smallest(family), next(iter(layout.forms))
    pattern = re.compile(layout.output_norms)
    n_stages = len(_backbone(model_name=name, dense_form=form).out_indices)
    for k in (1, n_stages):
        backbone = _backbone(model_name=name, dense_form=form, frozen_stages=k)
        norms = {
            n: min(int(m[1]), n_stages - 1)
            for n, _ in backbone.named_parameters()
            if (m := pattern.match(n.removeprefix("model.model.")))
        }
        assert norms, f"{name} {form}: no output norms"
        frozen = _frozen(backbone)
        assert {n for n, stage in norms.items() if stage < k} == set(norms) & frozen, (k, frozen)

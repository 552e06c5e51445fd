"""attnzoo.mm.AttnZooBackbone: registry builds, shapes, freezing, pretrained files, tiny det / seg runs."""

from __future__ import annotations

import copy
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from mmdet.registry import MODELS as DET_MODELS
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData, PixelData
from mmseg.registry import MODELS as SEG_MODELS
from mmseg.structures import SegDataSample

import attnzoo
from attnzoo.backbones import FAMILIES, UnknownModelError
from attnzoo.mm import AttnZooBackbone
from attnzoo.zoo.facts import smallest_variant_per_family

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").rglob("*.py"))

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


def test_import_attnzoo_does_not_import_openmmlab():
    code = "import sys, attnzoo; bad = [m for m in ('mmdet', 'mmseg', 'mmengine', 'attnzoo.mm') if m in sys.modules]; print(bad); assert not bad"  # noqa: E501
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


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


def _det_batch(h=96, w=128, n_images=2):
    gen = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for _ in range(n_images):
        inputs.append(torch.randint(0, 256, (3, h, w), generator=gen, dtype=torch.uint8))
        xy = torch.rand(3, 2, generator=gen) * torch.tensor([w * 0.6, h * 0.6])
        wh = 12 + torch.rand(3, 2, generator=gen) * torch.tensor([w * 0.3, h * 0.3])
        sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), scale_factor=(1.0, 1.0)))
        sample.gt_instances = InstanceData(
            bboxes=torch.cat([xy, xy + wh], dim=1), labels=torch.randint(0, 3, (3,), generator=gen)
        )
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def test_retinanet_biformer_trains_a_few_steps():
    cfg = Config.fromfile(ROOT / "configs/det/retinanet_biformer_tiny_fpn_1x_coco.py")
    model_cfg = cfg.model
    model_cfg.backbone.update(pretrained=False, drop_path_rate=0.0, n_win=4)
    model_cfg.neck.update(out_channels=32)
    model_cfg.bbox_head.update(num_classes=3, in_channels=32, feat_channels=32, stacked_convs=1)
    torch.manual_seed(0)
    model = _build("mmdet", model_cfg)
    model.init_weights()
    losses = _steps(model, _det_batch())
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
    gen = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for _ in range(2):
        img = torch.randint(0, 256, (3, 64, 96), generator=gen, dtype=torch.uint8)
        label = torch.zeros(1, 64, 96, dtype=torch.long)
        label[:, 32:, :48], label[:, :32, 48:], label[:, 32:, 48:] = 1, 2, 3  # quadrants
        img[0, label[0] == 1] //= 2  # some signal in the image
        sample = SegDataSample(metainfo=dict(img_shape=(64, 96), ori_shape=(64, 96), pad_shape=(64, 96)))
        sample.gt_sem_seg = PixelData(data=label)
        inputs.append(img)
        samples.append(sample)
    losses = _steps(model, dict(inputs=inputs, data_samples=samples), lr=0.05)
    assert losses[-1] < 0.9 * losses[0], losses


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


# ------------------------------------------------------------------------------------------ configs
@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(ROOT / "configs")) for p in CONFIGS])
def test_config_loads_and_builds(path):
    cfg = Config.fromfile(path)
    assert cfg.custom_imports["imports"] == ["attnzoo.mm"]
    backbone = cfg.model.backbone
    assert backbone.type == "AttnZooBackbone" and timm.is_model(backbone.model_name)
    backbone.pretrained = False  # no downloads in tests
    torch.manual_seed(0)
    model = _build(cfg.default_scope, cfg.model)
    model.init_weights()
    model.eval()
    h, w = 64, 96
    img = torch.randint(0, 256, (3, h, w), dtype=torch.uint8)
    meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w), scale_factor=(1.0, 1.0))
    sample = (DetDataSample if cfg.default_scope == "mmdet" else SegDataSample)(metainfo=meta)
    with torch.no_grad():
        batch = model.data_preprocessor(dict(inputs=[img], data_samples=[sample]), training=False)
        feats = model.extract_feat(batch["inputs"])
        results = model(**batch, mode="predict")
    assert len(feats) >= 4 and all(torch.isfinite(f).all() for f in feats)
    assert len(results) == 1


def test_attnzoo_scope_resolves_the_shipped_configs(tmp_path):
    """``_base_ = ['attnzoo::det/...']`` reads attnzoo/.mim/configs (configs/, shipped in the wheel)."""
    from mmengine.utils import get_installed_path

    shipped = Path(get_installed_path("attnzoo")) / ".mim" / "configs"
    assert shipped.is_dir(), f"{shipped} missing (editable installs resolve it only from the repo root)"
    assert sorted(p.relative_to(shipped) for p in shipped.rglob("*.py")) == [
        p.relative_to(ROOT / "configs") for p in CONFIGS
    ]
    child = tmp_path / "child.py"
    child.write_text(
        "_base_ = ['attnzoo::det/retinanet_biformer_tiny_fpn_1x_coco.py']\n"
        "model = dict(backbone=dict(model_name='biformer_small'))\n"
    )
    cfg = Config.fromfile(child)
    assert cfg.default_scope == "mmdet"
    assert cfg.model.backbone.model_name == "biformer_small" and cfg.model.backbone.drop_path_rate == 0.2

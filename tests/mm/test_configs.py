"""The shipped detection / segmentation configs (configs/, on the configs/_base_ fragments) and the
layer-wise lr decay constructor they use for plain ViTs."""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path

import pytest
import timm
import torch
from mmdet.registry import MODELS as DET_MODELS
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmseg.registry import MODELS as SEG_MODELS
from mmseg.structures import SegDataSample
from torch import nn

from attnzoo.backbones import FAMILIES
from attnzoo.mm import AttnZooBackbone, LayerDecayOptimWrapperConstructor
from attnzoo.zoo.registry import family_of
from tests.helpers.mm_batches import det_batch, seg_batch
from tests.helpers.shallow import shallow_kwargs

ROOT = Path(__file__).resolve().parents[2]
ALL_FILES = sorted((ROOT / "configs").rglob("*.py"))
CONFIGS = [p for p in ALL_FILES if "_base_" not in p.parts]


@pytest.fixture(autouse=True, scope="module")
def _read_openmmlab_metafiles_once():
    """mmengine re-reads mmdet's / mmseg's ~100 metafiles (YAML) for every ``mmdet::<config>`` base it
    resolves, ~1 s per config load here; their content does not change during a test run."""
    import mmengine.config.utils as utils

    original = utils._get_cfg_metainfo
    utils._get_cfg_metainfo = functools.cache(original)
    yield
    utils._get_cfg_metainfo = original


@functools.cache
def _loaded(path: Path) -> Config:
    return Config.fromfile(path)


def _load(path: Path) -> Config:
    """A shipped config, loaded once per test run (~0.25 s each: mmdet's / mmseg's base chains), copied
    so a test's changes stay its own."""
    return copy.deepcopy(_loaded(path))


def _base_of(path: Path) -> str:
    """The first ``_base_`` entry of a config, as written (read as text: loading at collection is slow)."""
    return re.search(r'^_base_ = \["([^"]+)"', path.read_text(), re.MULTILINE).group(1)


def _backbone_name(path: Path) -> str:
    """The backbone ``model_name`` a config sets, else the one of the sibling config it is built on."""
    match = re.search(r'\bmodel_name="([^"]+)"', path.read_text())
    return match.group(1) if match else _backbone_name(path.parent / _base_of(path).removeprefix("./"))


def _is_root(path: Path) -> bool:
    """A family's root det / seg config: Mask R-CNN 1x or UperNet straight on a configs/_base_ fragment.
    Those train in the default tier (shallow backbone), one det and one seg per family."""
    on_fragment = _base_of(path).startswith("../_base_/")
    return on_fragment and path.name.startswith(("mask-rcnn_", "upernet_")) and "_3x_" not in path.name


def test_every_family_has_every_task():
    """Each landed family ships RetinaNet 1x, Mask R-CNN 1x and 3x, UperNet 160k and Semantic FPN 80k, and
    exactly one root det and one root seg config."""
    tasks = [("retinanet_", "_1x_coco"), ("mask-rcnn_", "_1x_coco"), ("mask-rcnn_", "_3x_coco")]
    tasks += [("upernet_", "_160k_ade20k"), ("fpn_", "_80k_ade20k")]
    by_family: dict[str, list[Path]] = {f: [] for f in FAMILIES}
    for path in CONFIGS:
        by_family[family_of(_backbone_name(path))].append(path)
    for family, paths in by_family.items():
        for prefix, suffix in tasks:
            assert any(p.name.startswith(prefix) and p.stem.endswith(suffix) for p in paths), (family, prefix)
        roots = sorted(p.parent.name for p in paths if _is_root(p))
        assert roots == ["det", "seg"], (family, [p.name for p in paths if _is_root(p)])


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_config_loads(path):
    cfg = _load(path)
    assert cfg.custom_imports["imports"] == ["attnzoo.mm"]
    assert cfg.default_scope == {"det": "mmdet", "seg": "mmseg"}[path.parent.name]
    backbone = cfg.model.backbone
    assert backbone.type == "AttnZooBackbone" and timm.is_model(backbone.model_name)
    forms = FAMILIES[family_of(backbone.model_name)].dense.forms
    if forms:  # families with an official dense backbone use it
        assert backbone.dense_form == path.parent.name, path.name
    if cfg.optim_wrapper.get("constructor") == "LayerDecayOptimWrapperConstructor":
        assert 0 < cfg.optim_wrapper.paramwise_cfg.decay_rate < 1


def _build(cfg):
    """The model of a loaded config, seeded, with its init_weights applied, in the config's scope."""
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = {"mmdet": DET_MODELS, "mmseg": SEG_MODELS}[cfg.default_scope].build(cfg.model)
    model.init_weights()
    return model


def _optim_wrapper(model, cfg):
    """The config's own optimizer wrapper, built as a runner does; layer-wise lr decay (the plain-ViT
    recipe) gives several lrs, the largest being the config's."""
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    lrs = {g["lr"] for g in optim_wrapper.optimizer.param_groups}
    layer_decay = cfg.optim_wrapper.get("constructor") == "LayerDecayOptimWrapperConstructor"
    assert (len(lrs) > 1) == layer_decay and max(lrs) == cfg.optim_wrapper.optimizer.lr
    return optim_wrapper


def _assert_predicts(model, scope):
    """A 64 x 96 image goes through extract_feat and predict (eval), features finite."""
    model.eval()
    h, w = 64, 96
    img = torch.randint(0, 256, (3, h, w), dtype=torch.uint8)
    meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w), scale_factor=(1.0, 1.0))
    sample = (DetDataSample if scope == "mmdet" else SegDataSample)(metainfo=meta)
    with torch.no_grad():
        batch = model.data_preprocessor(dict(inputs=[img], data_samples=[sample]), training=False)
        feats = model.extract_feat(batch["inputs"])
        results = model(**batch, mode="predict")
    assert len(feats) >= 4 and all(torch.isfinite(f).all() for f in feats)
    assert len(results) == 1


@pytest.mark.slow
@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_config_builds_and_predicts(path):
    """The model and optimizer a config describes build at full size (random weights, no downloads), and
    an image goes through extract_feat and predict (OverLoCK-B Mask R-CNN takes ~30 s on CPU)."""
    cfg = _load(path)
    cfg.model.backbone.pretrained = False
    model = _build(cfg)
    _optim_wrapper(model, cfg)
    _assert_predicts(model, cfg.default_scope)


def _shallow(backbone):
    """The backbone cfg at the family's shallow depth (tests/helpers/shallow.py: the same widths, so the
    config's neck / head widths are still checked), no drop path, no download. A plain ViT's output
    blocks (3 / 5 / 7 / 11) do not exist at a shallow depth: it gets one block per output instead."""
    kwargs = shallow_kwargs(backbone.model_name)
    backbone.update(pretrained=False, drop_path_rate=0.0, **kwargs)
    outs = backbone.get("out_indices")
    if isinstance(kwargs.get("depth"), int) and outs is not None and max(outs) >= kwargs["depth"]:
        backbone.update(depth=len(outs), out_indices=tuple(range(len(outs))))


def _train(model, optim_wrapper, data, steps=2):
    """``steps`` steps of the config's optimizer. Each loss is finite and every trainable backbone
    parameter gets a finite gradient each step (no unused parameter, which DDP would reject), non-zero
    in at least one step (a zero-initialised residual branch end, e.g. HaloNet's last BN, passes none to
    its branch until it has moved), and has changed at the end. The losses."""
    model.train()
    params = {n: p for n, p in model.backbone.named_parameters() if p.requires_grad}
    start = {n: p.detach().clone() for n, p in params.items()}
    losses, zero = [], set(params)
    for _ in range(steps):
        batch = model.data_preprocessor(data, training=True)
        loss, _ = model.parse_losses(model(**batch, mode="loss"))
        assert torch.isfinite(loss), loss
        optim_wrapper.backward(loss)
        bad = [n for n, p in params.items() if p.grad is None or not torch.isfinite(p.grad).all()]
        assert not bad, f"backbone parameters without a finite gradient: {bad}"
        zero -= {n for n, p in params.items() if p.grad.any()}
        optim_wrapper.step()
        optim_wrapper.zero_grad()
        losses.append(loss.item())
    assert not zero, f"backbone parameters whose gradient stayed zero: {sorted(zero)}"
    unchanged = [n for n, p in params.items() if torch.equal(p, start[n])]
    assert not unchanged, f"backbone parameters training left unchanged: {unchanged}"
    return losses


@pytest.mark.parametrize("path", [p for p in CONFIGS if _is_root(p)], ids=lambda p: p.name)
def test_root_config_trains_and_predicts(path):
    """Each family's root det / seg config, its backbone shallow: the model and the config's own optimizer
    (layer-wise lr decay for plain ViTs) train two steps on a tiny batch (see ``_train``), then
    predict. The full-size builds are test_config_builds_and_predicts (slow tier)."""
    cfg = _load(path)
    _shallow(cfg.model.backbone)
    # The heads' inner widths narrowed (their in_channels, what the backbone feeds, kept) and 64 RoIs of
    # 512 sampled: the full-width heads' CPU time is several times the shallow backbones'.
    if cfg.default_scope == "mmdet":
        roi = cfg.model.roi_head
        roi.bbox_head.fc_out_channels, roi.mask_head.conv_out_channels = 64, 32
        cfg.model.train_cfg.rcnn.sampler.num = 64
        data = det_batch(n_images=1, masks=True)
    else:  # seg_batch's 64 x 96 images, not the 512 x 512 crop
        cfg.model.data_preprocessor.size = (64, 96)
        cfg.model.decode_head.channels, cfg.model.auxiliary_head.channels = 32, 16
        data = seg_batch()
    model = _build(cfg)
    _train(model, _optim_wrapper(model, cfg), data)
    _assert_predicts(model, cfg.default_scope)


# ------------------------------------------------------------------- official settings, per family
# The official MALA configs' drop_path_rate (detect/configs/MALA/* and segmentation/configs/MALA/*).
_MALA_DROP_PATH = dict(t=0.1, s=0.15, b=0.4, l=0.55)


def test_mala_configs_match_the_backbone_and_the_official_settings():
    """Every MALA config feeds its neck / heads the variant's widths and keeps the official
    drop_path_rate (MALA-T 3x, which the official repo lacks, uses T's 1x value)."""
    from attnzoo.backbones.mala import _VARIANTS

    paths = [p for p in CONFIGS if "_mala_" in p.name]
    assert len(paths) == 20
    for path in paths:
        cfg = _load(path)
        backbone = cfg.model.backbone
        size = backbone.model_name.removeprefix("mala_")
        widths = list(_VARIANTS[size]["embed_dims"])
        assert backbone.drop_path_rate == _MALA_DROP_PATH[size], path.name
        assert backbone.pretrained is True and tuple(backbone.out_indices) == (0, 1, 2, 3), path.name
        if "neck" in cfg.model and "in_channels" in cfg.model.neck:
            assert cfg.model.neck.in_channels == widths, path.name
        if "decode_head" in cfg.model and cfg.model.decode_head.type == "UPerHead":
            assert cfg.model.decode_head.in_channels == widths, path.name
            assert cfg.model.auxiliary_head.in_channels == widths[2], path.name


# The official OverLoCK configs' drop_path_rate (detection/configs/maskrcnn_overlock/*, the same for 1x
# and 3x; segmentation/configs/overlock/upernet_overlock_*_ade20k_8xb2.py); RetinaNet and Semantic FPN
# (no official configs) reuse them.
_OVERLOCK_DROP_PATH = {"det": dict(t=0.2, s=0.4, b=0.6), "seg": dict(t=0.2, s=0.3, b=0.5)}


def test_overlock_configs_match_the_backbone_and_the_official_settings():
    """Every OverLoCK config feeds its neck / heads the dense form's widths (C1, C2, C3 + C4 / 4,
    C4 + C4 / 4) and keeps the official drop_path_rate."""
    from attnzoo.backbones.overlock import _VARIANTS

    paths = [p for p in CONFIGS if "overlock" in p.name]
    assert len(paths) == 15
    for path in paths:
        cfg = _load(path)
        backbone = cfg.model.backbone
        form, size = backbone.dense_form, backbone.model_name.removeprefix("overlock_")
        c1, c2, c3, c4 = _VARIANTS[size]["embed_dim"]
        widths = [c1, c2, c3 + c4 // 4, c4 + c4 // 4]
        assert backbone.drop_path_rate == _OVERLOCK_DROP_PATH[form][size], path.name
        assert backbone.pretrained is True and tuple(backbone.out_indices) == (0, 1, 2, 3), path.name
        if path.name.startswith("upernet_"):
            assert cfg.model.decode_head.in_channels == widths, path.name
            assert cfg.model.auxiliary_head.in_index == 2, path.name
            assert cfg.model.auxiliary_head.in_channels == widths[2], path.name
        else:
            assert cfg.model.neck.in_channels == widths, path.name


def test_attnzoo_scope_resolves_the_shipped_configs(tmp_path):
    """``_base_ = ['attnzoo::det/...']`` reads attnzoo/.mim/configs (configs/, shipped in the wheel)."""
    from mmengine.utils import get_installed_path

    shipped = Path(get_installed_path("attnzoo")) / ".mim" / "configs"
    assert shipped.is_dir(), f"{shipped} missing (editable installs resolve it only from the repo root)"
    assert sorted(p.relative_to(shipped) for p in shipped.rglob("*.py")) == [
        p.relative_to(ROOT / "configs") for p in ALL_FILES
    ]
    child = tmp_path / "child.py"
    child.write_text(
        "_base_ = ['attnzoo::det/retinanet_biformer_tiny_fpn_1x_coco.py']\n"
        "model = dict(backbone=dict(model_name='biformer_small'))\n"
    )
    cfg = Config.fromfile(child)
    assert cfg.default_scope == "mmdet"
    assert cfg.model.backbone.model_name == "biformer_small" and cfg.model.backbone.drop_path_rate == 0.2


# --------------------------------------------------------------------------- layer-wise lr decay
# MALA with one block per stage and narrow widths (head_dim 16: RoPE needs a multiple of 4).
_TINY_MALA = dict(depths=(1, 1, 1, 1), embed_dims=(16, 32, 32, 64), num_heads=(1, 2, 2, 4))


class _Detector(nn.Module):
    """A backbone, a norm and a head: the parameters outside the backbone sit at the top layer."""

    def __init__(self, **backbone):
        super().__init__()
        self.backbone = AttnZooBackbone(drop_path_rate=0.0, **backbone)
        self.neck_norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 3)


def _first_frozen_at(model_name, names, **kwargs):
    """Each parameter's layer id from the adapter's public freezing rule (independent of the
    constructor): frozen by ``frozen_stages=k`` but not ``k - 1`` means layer ``k`` (0: the stem)."""
    ids: dict[str, int] = {}
    n_stages = AttnZooBackbone(model_name, **kwargs).num_stages
    for k in range(n_stages + 1):
        frozen = AttnZooBackbone(model_name, frozen_stages=k, **kwargs)
        for name, param in frozen.named_parameters():
            if not param.requires_grad and name in names:
                ids.setdefault(name, k)
    return ids, n_stages + 1


@pytest.mark.parametrize(
    ("model_name", "kwargs"),
    [("mala_t", _TINY_MALA), ("az_convit_tiny", dict(depth=3, out_indices=(0, 1, 2)))],
)
def test_layer_decay_lr_and_weight_decay_follow_the_formula(model_name, kwargs):
    torch.manual_seed(0)
    model = _Detector(model_name=model_name, **kwargs)
    lr, wd, rate = 1e-3, 0.05, 0.6
    constructor = LayerDecayOptimWrapperConstructor(
        dict(optimizer=dict(type="AdamW", lr=lr, weight_decay=wd)),
        dict(decay_rate=rate, custom_keys={"norm": dict(decay_mult=0.0), "pos_embed": dict(decay_mult=0.0)}),
    )
    groups = constructor(model).optimizer.param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    backbone_names = {f"backbone.{n}" for n, _ in model.backbone.named_parameters()}
    layer, num_layers = _first_frozen_at(
        model_name, {n.removeprefix("backbone.") for n in backbone_names}, **kwargs
    )
    assert len(groups) == len(names) and len(set(layer.values())) == num_layers
    for group in groups:
        (param,) = group["params"]
        name = names[id(param)]
        layer_id = layer[name.removeprefix("backbone.")] if name in backbone_names else num_layers
        assert group["lr"] == pytest.approx(lr * rate ** (num_layers - layer_id)), name
        no_decay = "norm" in name or "pos_embed" in name
        assert group.get("weight_decay", wd) == (0.0 if no_decay else wd), name
    assert any("norm" in n for n in names.values())


def test_layer_decay_bad_settings_give_clear_errors():
    with pytest.raises(ValueError, match=r"decay_rate in \(0, 1\], got None"):
        LayerDecayOptimWrapperConstructor(dict(optimizer=dict(type="AdamW", lr=1e-3)), dict())
    with pytest.raises(ValueError, match="got 1.5"):
        LayerDecayOptimWrapperConstructor(dict(optimizer=dict(type="AdamW", lr=1e-3)), dict(decay_rate=1.5))
    constructor = LayerDecayOptimWrapperConstructor(
        dict(optimizer=dict(type="AdamW", lr=1e-3)), dict(decay_rate=0.7)
    )
    with pytest.raises(ValueError, match="Linear has no AttnZooBackbone"):
        constructor(nn.Linear(2, 2))

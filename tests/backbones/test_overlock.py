"""OverLoCK: official keys, exact re-parameterisation, the deployment models, the converter's rules,
the small-map branch and the dense forms."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from timm.utils.model import reparameterize_model

import attnzoo
from attnzoo.backbones.overlock import OverLoCK, convert_overlock
from attnzoo.layers.reparam import DilatedReparamBlock
from tests.helpers.parity import load_golden, official_state_dict

# Official kernel sizes (every DilatedReparamBlock branch layout the variants use), tiny widths.
TINY = dict(
    depth=(1, 1, 1, 1),
    sub_depth=(1, 2),
    embed_dim=(16, 32, 64, 64),
    kernel_size=(17, 15, 13, 7),
    sub_num_heads=(2, 2),
    sub_mlp_ratio=(3, 3),
    projection=32,
    num_classes=5,
)


def _randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial parameters and BatchNorm statistics (fresh ones hide folding errors)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=gen, dtype=t.dtype))
            else:
                t.copy_(0.3 * torch.randn(t.shape, generator=gen, dtype=t.dtype))
    return model


def _tiny(**kwargs) -> OverLoCK:
    return _randomise(OverLoCK(**{**TINY, **kwargs}).double().eval())


def test_keys_are_the_official_manifest_less_the_aux_head():
    golden = load_golden("overlock_xt")
    own = {k: tuple(v.shape) for k, v in timm.create_model("overlock_xt").state_dict().items()}
    own = {k: s for k, s in own.items() if not k.endswith("num_batches_tracked")}
    want = {k: tuple(s) for k, s in golden["manifest"] if not k.startswith("aux_head.")}
    assert own == want


def test_dense_det_keys_are_the_official_manifest():
    golden = load_golden("overlock_t_det")
    model = timm.create_model("overlock_t", dense_outputs="det", num_classes=0)
    own = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert own == {k: tuple(s) for k, s in golden["manifest"]}


@pytest.mark.parametrize("name, millions", [("overlock_xt", 16.97), ("overlock_t", 34.48)])
def test_official_parameter_counts(name, millions):
    with torch.device("meta"):
        model = timm.create_model(name)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == millions


def test_dilated_reparam_block_folds_exactly_in_float64():
    for k in (5, 7, 9, 11, 13, 15, 17, 19):
        block = _randomise(DilatedReparamBlock(6, k).double().eval(), seed=k)
        x = torch.randn(2, 6, 23, 21, dtype=torch.float64)
        before = block(x)
        block.reparameterize()
        assert block.deployed and set(dict(block.named_parameters())) == {
            "lk_origin.weight",
            "lk_origin.bias",
        }
        torch.testing.assert_close(block(x), before, rtol=0, atol=1e-12)


def test_reparameterized_model_is_exact_and_loads_into_the_deploy_structure():
    model = _tiny()
    x = torch.randn(2, 3, 80, 96, dtype=torch.float64)
    with torch.no_grad():
        before = model(x)
        folded = reparameterize_model(model)  # timm's utility calls every block's reparameterize()
        torch.testing.assert_close(folded(x), before, rtol=0, atol=1e-11)
        deploy = OverLoCK(**TINY, deploy=True).double().eval()
        deploy.load_state_dict(folded.state_dict(), strict=True)
        torch.testing.assert_close(deploy(x), before, rtol=0, atol=1e-11)


def test_reparam_variants_take_the_deploy_checkpoints_and_refuse_training_ones():
    with torch.device("meta"):
        train, deploy = timm.create_model("overlock_xt"), timm.create_model("overlock_xt_reparam")
    assert any(k.endswith("lk_origin.bias") for k in deploy.state_dict())
    assert not any(".origin_bn." in k for k in deploy.state_dict())
    with pytest.raises(ValueError, match="re-parameterised structure .* overlock_\\*_reparam"):
        convert_overlock(dict(deploy.state_dict()), train)
    with pytest.raises(ValueError, match="training structure"):
        convert_overlock(dict(train.state_dict()), deploy)


def test_converter_drops_the_aux_head_and_takes_a_detector_backbone(tmp_path: Path):
    official = {k: v.float() for k, v in official_state_dict(load_golden("overlock_xt")).items()}
    model = timm.create_model("overlock_xt")
    converted = attnzoo.convert_official("overlock_xt", {"model": official}, model)
    assert not any(k.startswith("aux_head.") for k in converted)
    assert converted.keys() == {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    # A Mask R-CNN checkpoint: the backbone's entries, the classifier head absent (the det form has none).
    det = timm.create_model("overlock_xt", dense_outputs="det", num_classes=0)
    ckpt = {
        "state_dict": {**{f"backbone.{k}": v for k, v in det.state_dict().items()}, "neck.w": torch.ones(1)}
    }
    assert attnzoo.convert_official("overlock_xt", ckpt, det).keys() == det.state_dict().keys()
    # The ImageNet checkpoint into the dense form: the head stays behind (the official dense code's rule).
    into_dense = convert_overlock(official, det)
    assert not any(k.startswith(("head.", "aux_head.")) for k in into_dense)
    path = tmp_path / "overlock_xt_in1k_224.pth"
    torch.save({"model": official}, path)
    loaded = timm.create_model("overlock_xt", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    torch.testing.assert_close(loaded.state_dict()["head.4.weight"], official["head.4.weight"])


def test_small_maps_take_the_resize_branch_and_any_size_works():
    """Stage-3 maps under 13 px and stage-4 maps under 7 px are resized up for ContMix, then pooled
    back; odd sizes give ceil-halved maps."""
    model = _tiny()
    for h, w in ((33, 47), (64, 64), (97, 131)):
        feats = model.forward_intermediates(
            torch.randn(1, 3, h, w, dtype=torch.float64), intermediates_only=True
        )
        assert [tuple(f.shape[-2:]) for f in feats] == [(-(-h // r), -(-w // r)) for r in (4, 8, 16, 32)]
        assert all(torch.isfinite(f).all() for f in feats)
    with torch.no_grad():  # an empty batch and a 1-pixel image (every map below every window)
        assert model(torch.randn(0, 3, 64, 64, dtype=torch.float64)).shape == (0, 5)
        assert torch.isfinite(model(torch.randn(1, 3, 1, 1, dtype=torch.float64))).all()


def test_dense_forms_and_their_errors():
    det, seg = _tiny(dense_outputs="det", num_classes=0), _tiny(dense_outputs="seg", num_classes=0)
    assert hasattr(det, "h_proj") and len(det.extra_norm) == 5 and len(seg.extra_norm) == 4
    x = torch.randn(1, 3, 64, 96, dtype=torch.float64)
    feats = seg.forward_intermediates(x, intermediates_only=True)
    assert [f.shape[1] for f in feats] == list(seg.widths)
    with pytest.raises(ValueError, match="num_classes=0"):
        OverLoCK(**TINY, dense_outputs="det")
    with pytest.raises(ValueError, match="dense_outputs"):
        OverLoCK(**{**TINY, "num_classes": 0}, dense_outputs="cls")

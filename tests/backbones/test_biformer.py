"""BiFormer: official keys and checkpoints, Triton path inside the model, any-size features, cfgs, the
official dense forms and their zero padding."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

import attnzoo
from attnzoo.backbones import FAMILIES
from attnzoo.backbones.biformer import BiFormer, convert_biformer
from attnzoo.kernels import use_kernels
from attnzoo.layers import BiLevelRoutingAttention
from attnzoo.weights.fetch import url_cache_path
from tests.helpers.kernel_check import DEVICE
from tests.helpers.parity import load_golden, official_state_dict

SMALL_CFG = dict(depths=(1, 1, 1, 1), embed_dims=(32, 64, 96, 128), head_dim=16, n_win=3)
FORMS = FAMILIES["biformer"].dense.forms


def test_keys_are_the_official_manifest():
    golden = load_golden("biformer_tiny")
    model = timm.create_model("biformer_tiny")
    own = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert own == {k: tuple(s) for k, s in golden["manifest"]}


def test_official_checkpoint_file_loads(tmp_path: Path):
    sd = {k: v.float() for k, v in official_state_dict(load_golden("biformer_tiny")).items()}
    path = tmp_path / "biformer_tiny_in1k.pth"
    torch.save({"model": sd, "epoch": 300}, path)  # the official release's wrapping
    model = timm.create_model("biformer_tiny", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    own = model.state_dict()
    for key, value in sd.items():
        torch.testing.assert_close(own[key], value, rtol=0, atol=0, msg=key)
    # the URL path hands timm's filter the whole checkpoint dict; the converter unwraps it
    assert convert_biformer({"model": sd, "epoch": 300}, model).keys() == sd.keys()
    assert attnzoo.convert_official("biformer_tiny", {"model": sd}).keys() == sd.keys()


def test_release_link_is_cached_under_the_model_name_and_loads(hub_cache):
    """All official links end in '/root/content': the file is looked up as biformer_tiny.in1k.pth."""
    sd = {k: v.float() for k, v in official_state_dict(load_golden("biformer_tiny")).items()}
    weights = FAMILIES["biformer"].weights_for("biformer_tiny")
    assert weights.official_url.url.endswith("/root/content")
    path = url_cache_path(weights, weights.official_url)
    assert path.name == "biformer_tiny.in1k.pth"
    path.parent.mkdir(parents=True)
    torch.save({"model": sd, "epoch": 300}, path)
    model = timm.create_model("biformer_tiny", pretrained=True)
    torch.testing.assert_close(model.state_dict()["head.weight"], sd["head.weight"], rtol=0, atol=0)


def test_converter_rejects_other_widths():
    sd = official_state_dict(load_golden("biformer_tiny"))
    narrow = timm.create_model("biformer_tiny", **SMALL_CFG)
    with pytest.raises(ValueError, match="shape mismatches"):
        convert_biformer(sd, narrow)


@pytest.mark.parametrize(
    "pad_mode", ["mask", pytest.param("zeros", marks=pytest.mark.slow)]
)  # zeros: the layer-level test below is the default tier's case
def test_triton_path_matches_reference_in_model(pad_mode):
    """A small BiFormer, odd input size (padded regions; mask: k capped): kernel vs reference, fwd and
    grads."""
    torch.manual_seed(0)
    model = (
        timm.create_model("biformer_tiny", num_classes=5, pad_mode=pad_mode, **SMALL_CFG).eval().to(DEVICE)
    )
    x = torch.randn(1, 3, 44, 60).to(DEVICE)

    def run(backend):
        model.zero_grad()
        with use_kernels(backend):
            out = model(x)
        out.square().sum().backward()
        return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    out_r, grads_r = run("torch")
    out_t, grads_t = run("triton")
    torch.testing.assert_close(out_t, out_r, atol=1e-5, rtol=1e-5)
    assert grads_t.keys() == grads_r.keys()
    for n, g in grads_r.items():
        scale = max(1.0, g.abs().max().item())
        torch.testing.assert_close(
            grads_t[n], g, atol=1e-4 * scale, rtol=1e-4, msg=lambda m, n=n: f"{n}: {m}"
        )


def test_features_any_size_and_divisible_stage_maps():
    model = timm.create_model("biformer_tiny", features_only=True, **SMALL_CFG).eval()
    assert model.feature_info.channels() == [32, 64, 96, 128]
    assert model.feature_info.reduction() == [4, 8, 16, 32]
    with torch.no_grad():
        for h, w in ((90, 117), (224, 160), (33, 40)):
            feats = model(torch.randn(1, 3, h, w))
            assert [tuple(f.shape[-2:]) for f in feats] == [(-(-h // s), -(-w // s)) for s in (4, 8, 16, 32)]
            assert all(torch.isfinite(f).all() for f in feats)


def test_forward_intermediates_norm_and_pruning():
    model = timm.create_model("biformer_tiny", **SMALL_CFG).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        final, maps = model.forward_intermediates(x, norm=True)
        torch.testing.assert_close(maps[-1], final)
        nhwc = model.forward_intermediates(x, indices=[1], output_fmt="NHWC", intermediates_only=True)
        assert nhwc[0].shape == (1, 8, 8, 64)
        take = model.prune_intermediate_layers([0, 1])
        assert take == [0, 1] and len(model.stages) == 2
        assert [m.shape[1] for m in model.forward_intermediates(x, intermediates_only=True)] == [32, 64]


def test_pretrained_cfgs():
    for name, top1 in (("tiny", 81.4), ("small", 83.8), ("base", 84.3)):
        cfg = timm.models.get_pretrained_cfg(f"biformer_{name}.in1k")
        assert cfg.url.startswith("https://api.onedrive.com/v1.0/shares/")
        assert cfg.hf_hub_id == f"attnzoo/biformer_{name}.in1k"  # MIT: attnzoo's copy first, then OneDrive
        assert cfg.license == "mit" and cfg.paper_ids == "arXiv:2303.08810"
        assert any(str(top1) in n for n in cfg.notes)
    assert isinstance(timm.create_model("biformer_base", depths=(1, 1, 1, 1)), BiFormer)


# ------------------------------------------------------------------ padding modes and dense forms
@pytest.mark.parametrize(("form", "n_win"), [("det", 16), ("seg", 8)])
def test_dense_forms_are_the_official_backbones(form, n_win):
    """BiFormer_mm (object_detection/ and semantic_segmentation/ alike): the golden's official keys (no
    norm / head, extra_norms.0-3), the configs' n_win, zero padding, normed outputs at any size."""
    model = timm.create_model("biformer_tiny", **FORMS[form]).eval()
    own = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert own == {k: tuple(s) for k, s in load_golden("biformer_tiny_dense")["manifest"]}
    layers = [m for m in model.modules() if isinstance(m, BiLevelRoutingAttention)]
    assert layers and all(m.n_win == n_win and m.pad_mode == "zeros" for m in layers)
    small = timm.create_model("biformer_tiny", features_only=True, **{**FORMS[form], **SMALL_CFG}).eval()
    with torch.no_grad():
        feats = small(torch.randn(1, 3, 50, 70))
    assert [tuple(f.shape[1:]) for f in feats] == [
        (c, -(-50 // s), -(-70 // s)) for c, s in zip(SMALL_CFG["embed_dims"], (4, 8, 16, 32), strict=True)
    ]
    for f in feats:  # LayerNorm2d with unit weight, zero bias: zero mean over channels per position
        torch.testing.assert_close(f.mean(1), torch.zeros_like(f[:, 0]), atol=1e-5, rtol=0)


def test_dense_form_loads_classifier_and_official_dense_checkpoints(tmp_path: Path):
    """pretrained=<ImageNet file> into the det form: norm / head stay behind, extra_norms keep their
    init (the official non-strict load); an official detector's ``backbone.*`` fills every tensor."""
    classifier = {k: v.float() for k, v in official_state_dict(load_golden("biformer_tiny")).items()}
    path = tmp_path / "biformer_tiny_in1k.pth"
    torch.save({"model": classifier}, path)
    model = timm.create_model(
        "biformer_tiny", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **FORMS["det"]
    )
    own = model.state_dict()
    assert {k for k in classifier if k not in own} == {
        k for k in classifier if k.startswith(("norm.", "head."))
    }
    assert all(torch.equal(own[k], v) for k, v in classifier.items() if k in own)
    assert torch.equal(own["extra_norms.0.weight"], torch.ones(64))

    dense = {k: v.float() for k, v in official_state_dict(load_golden("biformer_tiny_dense")).items()}
    state = {**{f"backbone.{k}": v for k, v in dense.items()}, "neck.fpn_convs.0.conv.weight": torch.ones(1)}
    torch.save({"meta": {}, "state_dict": state}, path)
    model = timm.create_model(
        "biformer_tiny", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **FORMS["seg"]
    )
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in dense.items())

"""InLine-PVT: the converter (official keys, wrong variants refused), position embeddings at other sizes,
the stage layouts the official class allows, and parameter counts against the official builders."""

from __future__ import annotations

import functools

import pytest
import timm
import torch
import torch.nn.functional as F

import attnzoo
from attnzoo.backbones import FAMILIES
from attnzoo.backbones.inline_pvt import (
    InLinePVT,
    SpatialReductionAttention,
    convert_inline_pvt,
    stage_pos_embed,
)
from attnzoo.kernels import use_kernels
from tests.helpers.parity import load_golden, official_state_dict

TINY = dict(
    img_size=64,
    embed_dims=(16, 32, 32, 64),
    num_heads=(1, 2, 2, 4),
    mlp_ratios=(2, 2, 2, 2),
    depths=(1, 1, 1, 1),
)


@functools.cache
def _official() -> dict[str, torch.Tensor]:
    """The official inline_pvt_tiny state dict as the golden's maker filled it (official key names)."""
    return {k: v.float() for k, v in official_state_dict(load_golden("inline_pvt_tiny")).items()}


@functools.cache
def _meta(name: str, **kwargs) -> torch.nn.Module:
    """The model on the meta device (shapes only), built once per arguments."""
    with torch.device("meta"):
        return timm.create_model(name, **kwargs)


def test_official_checkpoint_converts_to_the_skeleton_names():
    model = _meta("inline_pvt_tiny")
    converted = convert_inline_pvt({"model": dict(_official()), "epoch": 300}, model)
    assert converted.keys() == model.state_dict().keys()
    assert converted["patch_embed.0.pos_embed"] is _official()["pos_embed1"]
    assert converted["stages.3.1.attn.residual.2.weight"] is _official()["block4.1.attn.residual.2.weight"]
    assert converted["patch_embed.2.norm.bias"] is _official()["patch_embed3.norm.bias"]
    # attnzoo's own keys (a checkpoint `attnzoo convert` wrote) pass through unchanged
    assert convert_inline_pvt(converted, model).keys() == converted.keys()
    # a detector trained with attnzoo's adapter saves the backbone under backbone.*
    ckpt = {"state_dict": {**{f"backbone.{k}": v for k, v in _official().items()}, "neck.w": torch.ones(1)}}
    assert attnzoo.convert_official("inline_pvt_tiny", ckpt, model).keys() == converted.keys()


@pytest.mark.parametrize("name", ["inline_pvt_small", "inline_pvt_medium"])
def test_a_checkpoint_of_another_variant_is_refused(name):
    # the variants differ only in depth: a shallower checkpoint would otherwise pass the shape checks
    with pytest.raises(ValueError, match=r"depths \(2, 2, 2, 2\).*another InLine-PVT variant"):
        convert_inline_pvt(_official(), _meta(name))


def test_a_checkpoint_of_another_attention_layout_is_refused():
    with pytest.raises(ValueError, match="unexpected keys"):
        convert_inline_pvt(_official(), _meta("inline_pvt_tiny", attn_type="IISS"))


def test_position_embeddings_resample_bilinearly_at_other_sizes():
    """The official _get_pos_embed rule: bilinear (align_corners False, no antialias) from the learned grid;
    the parameter itself at the learned grid."""
    pos = torch.randn(1, 8 * 8, 5)
    assert stage_pos_embed(pos, (8, 8), (8, 8)) is pos
    want = F.interpolate(pos.reshape(1, 8, 8, 5).permute(0, 3, 1, 2), size=(5, 11), mode="bilinear")
    torch.testing.assert_close(stage_pos_embed(pos, (8, 8), (5, 11)), want.flatten(2).transpose(1, 2))


def test_a_model_built_at_another_img_size_gets_resampled_checkpoint_embeddings():
    model = _meta("inline_pvt_tiny", img_size=(256, 192))
    converted = convert_inline_pvt(_official(), model)
    grid = model.patch_embed[1].grid
    assert grid == (32, 24) and converted["patch_embed.1.pos_embed"].shape == (1, 32 * 24, 128)
    torch.testing.assert_close(
        converted["patch_embed.1.pos_embed"], stage_pos_embed(_official()["pos_embed2"], (28, 28), grid)
    )


@pytest.mark.parametrize("attn_type", ["IIII", "SSSS", "ISIS"])
def test_any_input_size_gives_ceil_maps(attn_type):
    torch.manual_seed(0)
    model = InLinePVT(**TINY, attn_type=attn_type).eval()
    x = torch.randn(2, 3, 61, 90)
    with torch.no_grad(), use_kernels("torch"):
        feats = model.forward_intermediates(x, intermediates_only=True)
        logits = model(x)
    assert [tuple(f.shape[1:]) for f in feats] == [(16, 16, 23), (32, 8, 12), (32, 4, 6), (64, 2, 3)]
    assert logits.shape == (2, 1000) and torch.isfinite(logits).all()
    # the input is zero-padded to whole patches: the padded image gives the same logits
    with torch.no_grad(), use_kernels("torch"):
        torch.testing.assert_close(model(F.pad(x, (0, 2, 0, 3))), logits)


def test_softmax_reduction_attention_is_pvt_v1_attention_on_divisible_maps():
    torch.manual_seed(0)
    attn = SpatialReductionAttention(8, 2, sr_ratio=2).eval()
    x = torch.randn(2, 4 * 6, 8)
    q = attn.q(x).reshape(2, 24, 2, 4).transpose(1, 2)
    reduced = attn.norm(attn.sr(x.transpose(1, 2).reshape(2, 8, 4, 6)).flatten(2).transpose(1, 2))
    k, v = attn.kv(reduced).reshape(2, 6, 2, 2, 4).permute(2, 0, 3, 1, 4)
    want = ((q @ k.transpose(-1, -2)) * 4**-0.5).softmax(-1) @ v
    torch.testing.assert_close(attn(x, (4, 6)), attn.proj(want.transpose(1, 2).reshape(2, 24, 8)))


def test_stage_arguments_are_checked():
    with pytest.raises(ValueError, match="la_sr_ratios > 1 in InLine stage"):
        InLinePVT(
            **TINY, la_sr_ratios="8421"
        )  # the official builder's default, which its InLine layer can't run
    with pytest.raises(ValueError, match="'I' \\(InLine\\) or 'S'"):
        InLinePVT(**TINY, attn_type="IIIL")
    with pytest.raises(ValueError, match="num_heads needs one entry per stage"):
        InLinePVT(**{**TINY, "num_heads": (1, 2)})
    assert InLinePVT(**TINY, attn_type="SSSS", la_sr_ratios="8421").attn_type == "SSSS"


# The official builders' exact counts (models/inline_pvt.py with attn_type 'IIII', la_sr_ratios '1111') and
# the official README's (rounded). README's InLine-PVT-L says 50.2 M; its builder (cfgs/inline_pvt_b.yaml's
# inline_pvt_large) has 51.15 M.
@pytest.mark.parametrize(
    "name, count, readme",
    [
        ("inline_pvt_tiny", 12_032_232, 12.0),
        ("inline_pvt_small", 21_556_136, 21.6),
        ("inline_pvt_medium", 37_618_856, 37.6),
        ("inline_pvt_large", 51_154_280, 50.2),
    ],
)
def test_parameter_counts_follow_the_official_builders(name, count, readme):
    model = _meta(name)
    assert sum(p.numel() for p in model.parameters()) == count
    if name != "inline_pvt_large":
        assert round(count / 1e6, 1) == readme
    assert FAMILIES["inline_pvt"].weights_for(name).params_m == readme

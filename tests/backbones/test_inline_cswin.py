"""InLine-CSwin: the converter, the official structure and parameter counts, and the rule for other
input sizes (stripes padded to whole stripes; the padding takes part in nothing)."""

from __future__ import annotations

import math
from functools import cache

import pytest
import timm
import torch
import torch.nn.functional as F

import attnzoo
from attnzoo.backbones.inline_cswin import (
    CSWinBlock,
    InLineCSWin,
    InLineStripeAttention,
    LePEStripeAttention,
    convert_inline_cswin,
    parse_attn_types,
)
from tests.helpers.parity import load_golden, official_state_dict

# stage maps 16-8-4-2 at img_size 64: stage 1 InLine global, stage 2 InLine stripes of 4, stage 3
# softmax stripes of 3, stage 4 softmax global
SMALL = dict(
    img_size=64,
    embed_dim=16,
    depth=(1, 1, 2, 1),
    num_heads=(2, 2, 4, 4),
    split_size=(1, 2, 3, 2),
    la_split_size=(16, 4, 4, 2),
    attn_type="IISS",
)


@cache
def _official() -> dict[str, torch.Tensor]:
    """The official inline_cswin_tiny state dict the golden was made with (read-only: shared)."""
    return {k: v.float() for k, v in official_state_dict(load_golden("inline_cswin_tiny")).items()}


@cache
def _meta(name: str) -> torch.nn.Module:
    """A registered model built on the meta device (structure and shapes only; shared)."""
    with torch.device("meta"):
        return timm.create_model(name)


# ----------------------------------------------------------------------------- converter
def test_official_checkpoint_converts_and_attnzoo_keys_pass_through():
    model = _meta("inline_cswin_tiny")
    official = _official()
    assert "stage1.0.attns.0.residual.2.weight" in official and "merge3.conv.weight" in official
    converted = convert_inline_cswin({"model": official, "epoch": 300}, model)
    assert converted.keys() == model.state_dict().keys()
    assert converted["stages.0.0.attns.0.residual.2.weight"] is official["stage1.0.attns.0.residual.2.weight"]
    assert converted["merge.3.conv.weight"] is official["merge3.conv.weight"]
    # the stem, final norm and head keep the official names
    assert {"stage1_conv_embed.0.weight", "stage1_conv_embed.2.bias", "norm.weight", "head.bias"} <= set(
        converted
    )
    assert convert_inline_cswin(converted, model).keys() == converted.keys()
    # the registry's convert_official reaches the same converter
    assert attnzoo.convert_official("inline_cswin_tiny", official, model).keys() == converted.keys()


def test_a_checkpoint_of_another_variant_is_refused():
    with pytest.raises(ValueError, match="shape mismatches"):  # tiny's widths 64-512, base's 96-768
        convert_inline_cswin(_official(), _meta("inline_cswin_base"))
    # a deeper checkpoint (small: 3 blocks in stage 1, tiny 2) has blocks the model lacks
    deeper = dict(_official())
    deeper.update(
        {k.replace("stage1.1.", "stage1.2."): v for k, v in _official().items() if k.startswith("stage1.1.")}
    )
    with pytest.raises(ValueError, match=r"unexpected keys, e\.g\. \['stages\.0\.2\."):
        convert_inline_cswin(deeper, _meta("inline_cswin_tiny"))


# ----------------------------------------------------------------------------- official structure
# The official builders, counted with the official models/inline_cswin.py and the official configs (the
# README says 25M, 43M and 96M: it disagrees with its own code; the FLOPs it gives, 4.3G / 6.8G / 14.9G,
# are those of these sizes).
@pytest.mark.parametrize(
    "name, params",
    [
        ("inline_cswin_tiny", 20_604_520),
        ("inline_cswin_small", 33_032_872),
        ("inline_cswin_base", 73_413_640),
        ("inline_cswin_base_384", 73_413_640),
    ],
)
def test_parameter_counts_follow_the_official_builders(name, params):
    model = _meta(name)
    assert sum(p.numel() for p in model.parameters()) == params
    if name == "inline_cswin_tiny":  # the golden's manifest is the official model's state dict
        manifest = load_golden("inline_cswin_tiny")["manifest"]
        assert sum(math.prod(shape) for _, shape in manifest) == params


@pytest.mark.parametrize("name, side", [("inline_cswin_tiny", 224), ("inline_cswin_base_384", 384)])
def test_released_structure_and_no_padding_at_the_official_size(name, side):
    """InLine stages 1-2 are one global window; stage 3 is softmax stripes in two branches; stage 4 one
    global softmax window. At the official size every window tiles its map: nothing is padded."""
    model = _meta(name)
    for i, stage in enumerate(model.stages):
        block: CSWinBlock
        for block in stage:
            assert block.attn_type == ("I" if i < 2 else "S")
            assert block.branch_num == (2 if i == 2 else 1)
            h = side // 2 ** (i + 2)
            for branch in block.attns:
                hs, ws = branch.window(h, h)
                assert h % hs == 0 and h % ws == 0
                assert branch.idx in ((0, 1) if i == 2 else (-1,))
                assert branch.split_size == (7 if side == 224 else 12) or i < 2


def test_attn_type_strings():
    assert parse_attn_types("IISS", (1, 2, 1, 1)) == [["I"], ["I", "I"], ["S"], ["S"]]
    # 'M': that stage's first n blocks InLine, the rest softmax (the official attn_type[4:] count)
    assert parse_attn_types("IIMS2", (1, 1, 4, 1)) == [["I"], ["I"], ["I", "I", "S", "S"], ["S"]]
    with pytest.raises(ValueError, match="per stage"):
        parse_attn_types("IIS", (1, 1, 1, 1))
    with pytest.raises(ValueError, match="needs the number"):
        parse_attn_types("IIMS", (1, 1, 1, 1))
    with pytest.raises(ValueError, match="la_split_size needs one entry per stage"):
        InLineCSWin(**{**SMALL, "la_split_size": "16-8-4"})


# ----------------------------------------------------------------------------- other input sizes
def test_stem_maps_are_ceil_and_equal_the_official_stem_where_it_agrees():
    model = InLineCSWin(**SMALL).double().eval()
    stem = model.stage1_conv_embed
    for size in (64, 67, 97, 98, 99):
        x = torch.randn(1, 3, size, size + 1, dtype=torch.float64)
        y = stem(x)
        assert y.shape[-2:] == (math.ceil(size / 4), math.ceil((size + 1) / 4))
        # the official stem (no padding): floor((H - 3) / 4) + 1 maps, the same values where they exist
        official = F.layer_norm(
            stem[0](x).permute(0, 2, 3, 1), (16,), stem[2].weight, stem[2].bias, eps=1e-5
        ).permute(0, 3, 1, 2)
        torch.testing.assert_close(y[..., : official.shape[-2], : official.shape[-1]], official)


@pytest.mark.parametrize("mixer", [InLineStripeAttention, LePEStripeAttention])
@pytest.mark.parametrize("idx", [0, 1])
def test_padded_stripes_equal_narrower_stripes(mixer, idx):
    """A map 10 wide in stripes of 4 pads to 12: the real tokens of the last stripe get exactly what a
    2-wide stripe gives them (padding is out of the softmax, InLine's 1 / N and means, LePE and the
    local residual), and the full stripes what they give on their own."""
    torch.manual_seed(0)
    wide = mixer(8, 2, idx, 4).double().eval()
    narrow = mixer(8, 2, idx, 2).double().eval()
    narrow.load_state_dict(wide.state_dict())
    q, k, v = (torch.randn(2, 10, 5, 8, dtype=torch.float64) for _ in range(3))
    if idx == 1:  # stripes along the height: a 10-tall map
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    x_mean = torch.randn(2, 8, dtype=torch.float64)
    with torch.no_grad():
        out = wide(q, k, v, x_mean)
        assert out.shape == q.shape

        def cut(t, lo, hi):
            return t[:, :, lo:hi] if idx == 0 else t[:, lo:hi]

        last = narrow(*(cut(t, 8, 10) for t in (q, k, v)), x_mean)
        first = wide(*(cut(t, 0, 8) for t in (q, k, v)), x_mean)
    torch.testing.assert_close(cut(out, 8, 10), last, rtol=0, atol=1e-12)
    torch.testing.assert_close(cut(out, 0, 8), first, rtol=0, atol=1e-12)


def test_inline_global_window_is_the_whole_map_at_any_shape():
    """A global InLine branch on a 5 x 7 map: injective attention over all 35 tokens, plus the local
    residual from the mean token's kernels, plus LePE (the official formula, written out)."""
    torch.manual_seed(0)
    attn = InLineStripeAttention(8, 2).double().eval()
    q, k, v = (torch.randn(2, 5, 7, 8, dtype=torch.float64) for _ in range(3))
    x_mean = torch.randn(2, 8, dtype=torch.float64)
    with torch.no_grad():
        out = attn(q, k, v, x_mean)
        heads = [t.reshape(2, 35, 2, 4).transpose(1, 2) for t in (q, k, v)]
        qh, kh, vh = heads
        s = 4**-0.5
        mixed = qh @ (kh.transpose(-1, -2) @ vh) * (s / 35) + (
            1 - qh @ kh.mean(2, keepdim=True).transpose(-1, -2) * s
        ) * vh.mean(2, keepdim=True)
        mixed = mixed.transpose(1, 2).reshape(2, 5, 7, 8)
        v_map = v.permute(0, 3, 1, 2)
        weight = attn.residual(x_mean.unsqueeze(-1)).reshape(16, 1, 3, 3)
        local = F.conv2d(v_map.reshape(1, 16, 5, 7), weight, padding=1, groups=16).reshape(2, 8, 5, 7)
        want = mixed + (local + attn.get_v(v_map)).permute(0, 2, 3, 1)
    torch.testing.assert_close(out, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("size", [(33, 47), (97, 131), (75, 64)])
def test_any_input_size_gives_finite_ceil_sized_features(size):
    model = InLineCSWin(**SMALL).eval()
    h, w = size
    with torch.no_grad():
        feats = model.forward_intermediates(torch.randn(1, 3, h, w), intermediates_only=True)
        logits = model(torch.randn(1, 3, h, w))
    for f, r, c in zip(feats, (4, 8, 16, 32), (16, 32, 64, 128), strict=True):
        assert f.shape == (1, c, math.ceil(h / r), math.ceil(w / r))
        assert torch.isfinite(f).all()
    assert logits.shape == (1, 1000) and torch.isfinite(logits).all()


def test_stripe_blocks_need_even_heads_and_known_mixers():
    with pytest.raises(ValueError, match="split dim and heads in half"):
        CSWinBlock(16, 3, "S", 2)
    with pytest.raises(ValueError, match="attn must be"):
        CSWinBlock(16, 2, "L", 2)

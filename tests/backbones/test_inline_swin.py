"""InLine-Swin: the converter (official keys and buffers, wrong variants), the window rule at sizes that
pad / shift / use rectangular windows, the official shifted softmax block, attn_type strings and
parameter counts."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F

import attnzoo
from attnzoo.backbones import inline_swin
from attnzoo.backbones.inline_swin import (
    InLineSwin,
    InLineSwinBlock,
    WindowAttention,
    block_attn_types,
    convert_inline_swin,
    shift_mask,
    window_geometry,
)
from attnzoo.kernels import use_kernels
from tests.helpers.parity import load_golden

# A narrow model with the official geometry (window 56, softmax window 7), and SMALL_WINDOW: the same
# with InLine window 16 (softmax window still 7), which exercises every case of the window rule on
# small inputs.
NARROW = dict(depths=(2, 2, 2, 2), embed_dim=16, num_heads=(1, 2, 2, 4), window_size=56)
SMALL_WINDOW = {**NARROW, "window_size": 16}


@functools.cache
def meta_model(name: str) -> torch.nn.Module:
    """A registered variant on the meta device (shapes only), built once."""
    with torch.device("meta"):
        return timm.create_model(name)


@functools.cache
def narrow_iiss() -> tuple[InLineSwin, dict[str, torch.Tensor]]:
    """A narrow model with Small's attention types and its official-key checkpoint at 224 px."""
    model = InLineSwin(**{**NARROW, "attn_type": "IISS"})
    return model, to_official(model, 224)


# ----------------------------------------------------------------------------- official buffers, written
# here from the official formulas (SwinTransformerBlock / WindowAttention of models/inline_swin.py)
def official_index(w: int) -> torch.Tensor:
    coords = torch.stack(torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (w - 1)
    return rel[..., 0] * (2 * w - 1) + rel[..., 1]


def official_mask(side: int, w: int, s: int) -> torch.Tensor:
    img = torch.zeros(side, side)
    cuts = (slice(0, -w), slice(-w, -s), slice(-s, None))
    for n, (h, v) in enumerate((h, v) for h in cuts for v in cuts):
        img[h, v] = n
    win = img.reshape(side // w, w, side // w, w).permute(0, 2, 1, 3).reshape(-1, w * w)
    diff = win[:, None, :] - win[:, :, None]
    return torch.zeros_like(diff).masked_fill(diff != 0, -100.0)


def to_official(model: InLineSwin, side: int) -> dict[str, torch.Tensor]:
    """``model``'s weights under the official keys, with the buffers an official model built for a
    ``side`` x ``side`` input saves (index per softmax block, mask per shifted block)."""
    sd = {}
    for key, value in model.state_dict().items():
        if key.startswith("stages."):
            _, i, j, rest = key.split(".", 3)
            key = f"layers.{i}.blocks.{j}.{rest}"
        elif key.startswith("downsamples."):
            _, i, rest = key.split(".", 2)
            key = f"layers.{int(i) - 1}.downsample.{rest}"
        sd[key] = value
    for i, stage in enumerate(model.stages):
        res = side // 4 // 2**i
        for j, block in enumerate(stage):
            w = min(block.window_size, res)
            if block.attn_type == "S":
                sd[f"layers.{i}.blocks.{j}.attn.relative_position_index"] = official_index(w)
            if block.shift_size and res > block.window_size:
                sd[f"layers.{i}.blocks.{j}.attn_mask"] = official_mask(res, w, block.shift_size)
    return sd


# ----------------------------------------------------------------------------- converter
def test_official_checkpoint_with_buffers_converts_and_loads():
    """InLine stages 1-2, a softmax stage 3 whose odd blocks shift at 224 px (as Small / Base), and a
    softmax stage 4 at its window: every official buffer kind appears and is checked, then dropped."""
    model = InLineSwin(**{**NARROW, "attn_type": "IISS"})
    official = to_official(model, 224)
    assert (
        "layers.2.blocks.1.attn_mask" in official
        and "layers.3.blocks.0.attn.relative_position_index" in official
    )
    assert "layers.1.downsample.reduction.weight" in official
    ckpt = {"model": official, "epoch": 300}
    converted = convert_inline_swin(ckpt, model)
    assert converted.keys() == model.state_dict().keys()
    model.load_state_dict(converted, strict=True)
    # attnzoo's own keys (`attnzoo convert` output) pass through; so does a detector's backbone.*
    assert convert_inline_swin(dict(model.state_dict()), model).keys() == model.state_dict().keys()
    det = {"state_dict": {**{f"backbone.{k}": v for k, v in official.items()}, "neck.w": torch.ones(1)}}
    assert attnzoo.convert_official("inline_swin_tiny", det, model).keys() == model.state_dict().keys()


@pytest.mark.parametrize(
    "buffer", ["layers.2.blocks.1.attn_mask", "layers.3.blocks.0.attn.relative_position_index"]
)
def test_a_buffer_the_window_rule_does_not_build_is_refused(buffer):
    model, official = narrow_iiss()
    official = dict(official)
    official[buffer] = official[buffer].flip(-1)
    with pytest.raises(ValueError, match="is not the buffer"):
        convert_inline_swin(official, model)


@pytest.mark.parametrize("other", ["inline_swin_small", "inline_swin_base_384"])
def test_a_checkpoint_of_another_variant_is_refused(other):
    """Tiny's official keys into Small (other attention types) / Base-384 (other widths)."""
    official = to_official(meta_model("inline_swin_tiny"), 224)
    model = meta_model(other)
    with pytest.raises(ValueError, match="checkpoint does not match InLineSwin"):
        convert_inline_swin(official, model)


def test_base_and_base_384_differ_in_the_softmax_table_only():
    base, big = meta_model("inline_swin_base"), meta_model("inline_swin_base_384")
    diff = {
        k: (tuple(v.shape), tuple(big.state_dict()[k].shape))
        for k, v in base.state_dict().items()
        if v.shape != big.state_dict()[k].shape
    }
    assert diff and all(k.endswith("relative_position_bias_table") for k in diff)
    assert set(diff.values()) == {((169, 32), (529, 32)), ((169, 16), (529, 16))}
    assert (base.window_size, base.softmax_window_size, big.window_size, big.softmax_window_size) == (
        56,
        7,
        96,
        12,
    )


# ----------------------------------------------------------------------------- window rule
@pytest.mark.parametrize(
    "size, window, shift, want",
    [
        ((56, 56), 56, 28, ((56, 56), (0, 0))),  # official 224 px, stage 1: one global window
        ((7, 7), 7, 3, ((7, 7), (0, 0))),  # softmax stage 4 at 224 px: the window, no shift
        ((14, 14), 7, 3, ((7, 7), (3, 3))),  # softmax stage 3 of Small / Base at 224 px
        ((25, 42), 56, 28, ((25, 42), (0, 0))),  # fits on both axes: one rectangular window
        ((56, 120), 56, 28, ((56, 56), (0, 28))),  # one axis only: shifted along the long axis
        ((200, 334), 56, 28, ((56, 56), (28, 28))),  # 800 x 1333 stage 1: mmdet's windows
        ((2, 3), 7, 3, ((2, 3), (0, 0))),  # below the softmax window: a sub-table
    ],
)
def test_window_geometry(size, window, shift, want):
    assert window_geometry(size, window, shift) == want


class _Counted:
    """``module`` with one function counted (patched into inline_swin's namespace only)."""

    def __init__(self, module, name, count):
        self._module, self._name, self._count, self._fn = module, name, count, getattr(module, name)

    def __getattr__(self, attr):
        if attr != self._name:
            return getattr(self._module, attr)

        def counted(*args, **kwargs):
            self._count(*args)
            return self._fn(*args, **kwargs)

        return counted


def _count_calls(monkeypatch) -> dict[str, int]:
    """Non-empty pads and rolls done by inline_swin's own code (not the InLine layer's 3x3 padding)."""
    calls = {"pad": 0, "roll": 0}

    def pad(x, p, *rest):
        calls["pad"] += any(p)

    def roll(*args):
        calls["roll"] += 1

    monkeypatch.setattr(inline_swin, "F", _Counted(F, "pad", pad))
    monkeypatch.setattr(inline_swin, "torch", _Counted(torch, "roll", roll))
    return calls


@pytest.mark.parametrize(
    "kwargs, side, rolls",
    [
        (dict(attn_type="IIIS"), 224, 0),  # Tiny: no shift anywhere
        (dict(attn_type="IISS"), 224, 2),  # Small's stage 3: 14 x 14, window 7, the odd block shifts
        (dict(window_size=96, attn_type="IIMS1"), 384, 2),  # Base-384: stage 3 24 x 24, window 12
    ],
)
def test_no_padding_at_the_official_resolutions(monkeypatch, kwargs, side, rolls):
    """At the official sizes no map is padded; only softmax blocks on maps beyond their window shift."""
    model = InLineSwin(**{**NARROW, **kwargs}, num_classes=0).eval()
    calls = _count_calls(monkeypatch)
    with torch.no_grad():
        out = model(torch.randn(1, 3, side, side))
    assert out.shape == (1, 128) and calls == {"pad": 0, "roll": rolls}


def _record_windows(monkeypatch) -> list[tuple]:
    """Each block's (map size, window, shift) as its forward decides them."""
    seen = []

    def recorded(size, window, shift):
        out = window_geometry(size, window, shift)
        seen.append((size, *out))
        return out

    monkeypatch.setattr(inline_swin, "window_geometry", recorded)
    return seen


@pytest.mark.parametrize(
    "size, want",
    [
        (  # InLine window 16, softmax window 7; two blocks a stage, the second one shifted
            (96, 128),
            [
                ((24, 32), (16, 16), (0, 0)),  # padded to 32 x 32, four windows
                ((24, 32), (16, 16), (8, 8)),  # ... rolled by 8 on both axes
                ((12, 16), (12, 16), (0, 0)),  # fits on both axes: one 12 x 16 window
                ((12, 16), (12, 16), (0, 0)),
                ((6, 8), (6, 7), (0, 0)),  # softmax, one axis only: 6 x 7 windows, W padded to 14
                ((6, 8), (6, 7), (0, 3)),  # ... shifted along W only, masked
                ((3, 4), (3, 4), (0, 0)),  # below the softmax window: a sub-table
                ((3, 4), (3, 4), (0, 0)),
            ],
        ),
        ((64, 160), [((16, 40), (16, 16), (0, 0)), ((16, 40), (16, 16), (0, 8))]),  # rectangular 16-windows
        ((97, 131), [((25, 33), (16, 16), (0, 0)), ((25, 33), (16, 16), (8, 8))]),  # odd: padded to 32 x 48
    ],
)
def test_any_size_pads_shifts_and_gives_ceil_maps(monkeypatch, size, want):
    model = InLineSwin(**{**SMALL_WINDOW, "attn_type": "IISS"}, num_classes=0).eval()
    seen = _record_windows(monkeypatch)
    calls = _count_calls(monkeypatch)
    with torch.no_grad():
        feats = model.forward_intermediates(torch.randn(1, 3, *size), intermediates_only=True)
    for feat, stride, width in zip(feats, (4, 8, 16, 32), (16, 32, 64, 128), strict=True):
        assert feat.shape == (1, width, math.ceil(size[0] / stride), math.ceil(size[1] / stride))
        assert torch.isfinite(feat).all()
    assert seen[: len(want)] == want
    assert calls["pad"] > 0 and calls["roll"] > 0


def _reference_block(block: InLineSwinBlock, x: torch.Tensor) -> torch.Tensor:
    """The official SwinTransformerBlock with softmax attention on a square map that whole windows tile
    (explicit softmax, official mask and index), from ``block``'s weights; x channels-last."""
    b, side, _, c = x.shape
    w, s, attn = block.window_size, block.shift_size, block.attn
    heads = attn.num_heads
    y = torch.roll(block.norm1(x), (-s, -s), (1, 2))
    win = y.reshape(b, side // w, w, side // w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w, c)
    q, k, v = attn.qkv(win).reshape(-1, w * w, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    logits = (q * attn.scale) @ k.transpose(-2, -1)
    index = official_index(w)
    logits = logits + attn.relative_position_bias_table[index.reshape(-1)].reshape(w * w, w * w, -1).permute(
        2, 0, 1
    )
    mask = official_mask(side, w, s).to(x.dtype)
    logits = (logits.reshape(b, -1, heads, w * w, w * w) + mask[None, :, None]).reshape(
        -1, heads, w * w, w * w
    )
    out = attn.proj((logits.softmax(-1) @ v).transpose(1, 2).reshape(-1, w * w, c))
    out = out.reshape(b, side // w, side // w, w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(b, side, side, c)
    x = x + torch.roll(out, (s, s), (1, 2))
    return x + block.mlp(block.norm2(x))


def test_shifted_softmax_block_matches_the_official_block():
    """Small / Base's stage-3 odd blocks at 224 px (14 x 14, window 7, shift 3): no golden covers them."""
    torch.manual_seed(0)
    block = InLineSwinBlock(24, 3, "S", window_size=7, shift_size=3).double().eval()
    with torch.no_grad():
        block.attn.relative_position_bias_table.normal_()
        x = torch.randn(2, 14, 14, 24, dtype=torch.float64)
        got = block(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        torch.testing.assert_close(got, _reference_block(block, x), rtol=0, atol=1e-12)


def test_shift_mask_on_a_padded_map_is_mmdets():
    """mmdet's ShiftWindowMSA mask: regions cut on the padded map (here 21 x 28 for a 16 x 22 map)."""
    got = shift_mask((21, 28), (7, 7), (3, 3))
    labels = torch.zeros(21, 28)
    for n, (h, v) in enumerate(
        (h, v)
        for h in (slice(0, -7), slice(-7, -3), slice(-3, None))
        for v in (slice(0, -7), slice(-7, -3), slice(-3, None))
    ):
        labels[h, v] = n
    win = labels.reshape(3, 7, 4, 7).permute(0, 2, 1, 3).reshape(12, 49)
    torch.testing.assert_close(got, torch.where(win[:, None] != win[:, :, None], -100.0, 0.0))
    # an unshifted axis is one region: only the W cuts separate tokens
    one_axis = shift_mask((7, 14), (7, 7), (0, 3))
    assert one_axis.shape == (2, 49, 49) and (one_axis[0] == 0).all() and (one_axis[1] != 0).any()


def test_a_sub_window_reads_the_sub_table():
    attn = WindowAttention(8, 7, 2)
    bias = attn.relative_bias((3, 5))
    table = attn.relative_position_bias_table
    ys, xs = torch.meshgrid(torch.arange(3), torch.arange(5), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    for i in range(15):
        for j in range(15):
            row = (ys[i] - ys[j] + 6) * 13 + (xs[i] - xs[j] + 6)
            assert torch.equal(bias[:, i, j], table[row])
    assert torch.equal(
        attn.relative_bias((7, 7)), table[official_index(7).reshape(-1)].reshape(49, 49, 2).permute(2, 0, 1)
    )


def test_inline_windows_use_no_mask_and_take_padded_tokens():
    """An InLine block on a 60 x 40 map with window 32, shift 16: the normed map zero-padded to 64 x 64,
    rolled by 16 on both axes, four unmasked 32 x 32 windows (padded tokens included), rolled back and
    cropped; written out window by window here."""
    torch.manual_seed(0)
    block = InLineSwinBlock(8, 2, "I", window_size=32, shift_size=16).double().eval()
    x = torch.randn(2, 60, 40, 8, dtype=torch.float64)
    with torch.no_grad(), use_kernels("torch"):
        got = block.mix(x)
        y = torch.roll(F.pad(x, (0, 0, 0, 24, 0, 4)), (-16, -16), (1, 2))
        out = torch.empty_like(y)
        for r in (0, 32):
            for c in (0, 32):
                tokens = y[:, r : r + 32, c : c + 32].reshape(2, 32 * 32, 8)
                out[:, r : r + 32, c : c + 32] = block.attn(tokens, grid=(32, 32)).reshape(2, 32, 32, 8)
        want = torch.roll(out, (16, 16), (1, 2))[:, :60, :40]
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- attn_type, counts
def test_attn_type_strings():
    assert block_attn_types("IIMS2", (2, 2, 18, 2))[2] == ["I", "I"] + ["S"] * 16
    assert block_attn_types("IIIS", (2, 2, 6, 2)) == [["I"] * 2, ["I"] * 2, ["I"] * 6, ["S"] * 2]
    for bad in ("IIS", "IIXS", "IIMS", "IIIS2"):
        with pytest.raises(ValueError, match="attn_type"):
            block_attn_types(bad, (2, 2, 6, 2))


@pytest.mark.parametrize(
    "name, count, readme_millions",
    [
        ("inline_swin_tiny", 29_223_544, 30),  # = the golden manifest (the official model)
        ("inline_swin_small", 49_793_296, 50),
        ("inline_swin_base", 88_350_120, 88),
        ("inline_swin_base_384", 88_465_320, None),  # not in the README (no weights released)
    ],
)
def test_parameter_counts(name, count, readme_millions):
    """The official builder's counts; the README's rounded figures (it prints Tiny's 29.2M as 30M)."""
    model = meta_model(name)
    assert sum(p.numel() for p in model.parameters()) == count
    if readme_millions is not None:
        assert abs(count / 1e6 - readme_millions) < 1
    if name == "inline_swin_tiny":
        assert count == sum(math.prod(s) for _, s in load_golden("inline_swin_tiny")["manifest"])


def test_no_weight_decay_includes_the_bias_tables():
    model, _ = narrow_iiss()
    skip = model.no_weight_decay()
    assert "stages.3.0.attn.relative_position_bias_table" in skip and "stages.0.0.attn.qkv.weight" not in skip


# ----------------------------------------------------------------------------- configs
# InLine-Swin's own ImageNet drop_path_rate (cfgs/inline_swin_{t,s,b}.yaml), used by its det / seg configs.
_DROP_PATH = {"inline_swin_tiny": 0.2, "inline_swin_small": 0.3, "inline_swin_base": 0.5}


@pytest.mark.parametrize("size", ["t", "s", "b"])
def test_configs_feed_the_backbone_widths_and_keep_the_recipe(size):
    """Swin's published mmdet / mmseg recipe with InLine-Swin's drop_path; necks / heads get its widths."""
    config = pytest.importorskip("mmengine.config")
    root = Path(__file__).resolve().parents[2] / "configs"
    det = config.Config.fromfile(
        root / f"det/mask-rcnn_inline_swin_{size}_fpn_1x_coco.py", import_custom_modules=False
    )
    seg = config.Config.fromfile(
        root / f"seg/upernet_inline_swin_{size}_512x512_160k_ade20k.py", import_custom_modules=False
    )
    for cfg, lr, wd in ((det, 1e-4, 0.05), (seg, 6e-5, 0.01)):
        backbone = cfg.model.backbone
        widths = list(meta_model(backbone.model_name).widths)
        assert backbone.drop_path_rate == _DROP_PATH[backbone.model_name]
        assert backbone.pretrained is True and tuple(backbone.out_indices) == (0, 1, 2, 3)
        assert (cfg.optim_wrapper.optimizer.type, cfg.optim_wrapper.optimizer.lr) == ("AdamW", lr)
        assert cfg.optim_wrapper.optimizer.weight_decay == wd
        assert cfg.optim_wrapper.paramwise_cfg.custom_keys.relative_position_bias_table.decay_mult == 0
    assert list(det.model.neck.in_channels) == list(meta_model(det.model.backbone.model_name).widths)
    assert (
        list(seg.model.decode_head.in_channels) == widths
        and seg.model.auxiliary_head.in_channels == widths[2]
    )

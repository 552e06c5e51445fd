"""InLine-DeiT: official keys and checkpoints, the converter's refusals, other image sizes (pos_embed
resampling, the local residual on a non-square grid), the grid hand-off, parameter counts and cfgs."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F

import attnzoo
from attnzoo.backbones import FAMILIES
from attnzoo.backbones.inline_deit import InLineDeiT, InLineDeiTAttention, convert_inline_deit
from attnzoo.kernels import use_kernels
from attnzoo.weights.fetch import url_cache_path
from attnzoo.zoo import list_models
from tests.helpers.parity import load_golden, official_state_dict

VARIANTS = ("inline_deit_tiny", "inline_deit_small", "inline_deit_base")
SMALL = dict(embed_dim=48, depth=2, num_heads=3, num_classes=5)


@pytest.fixture(scope="module")
def official() -> dict[str, torch.Tensor]:
    """The tiny golden's official state dict (float32, as a released file holds it)."""
    return {k: v.float() for k, v in official_state_dict(load_golden("inline_deit_tiny")).items()}


@pytest.fixture(scope="module")
def official_2(official) -> dict[str, torch.Tensor]:
    """Its first two blocks: an official-layout checkpoint that is quick to save, load and run."""
    return {k: v for k, v in official.items() if not _deep(k)}


def _deep(key: str) -> bool:
    return key.startswith("blocks.") and int(key.split(".")[1]) >= 2


def _meta(name: str, **kwargs) -> torch.nn.Module:
    with torch.device("meta"):
        return timm.create_model(name, **kwargs)


def _official_attention(attn: InLineDeiTAttention, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The official layer's math, written out independently: injective linear attention over all tokens
    (N counts the class token), then a grouped-conv2d 3x3 residual of v on the patch grid."""
    b, n, c = x.shape
    heads, d = attn.num_heads, c // attn.num_heads
    q, k, v = (t.reshape(b, n, heads, d).transpose(1, 2) for t in attn.qkv(x).chunk(3, dim=-1))
    s = d**-0.5
    out = (q @ (k.transpose(-2, -1) @ v)) * (s / n)
    out = out + (1 - (q * k.mean(2, keepdim=True)).sum(-1, keepdim=True) * s) * v.mean(2, keepdim=True)
    out = out.transpose(1, 2).reshape(b, n, c)
    weights = attn.residual(x.mean(1)[..., None]).reshape(b * c, 1, 3, 3)
    grid = v[:, :, 1:].transpose(1, 2).reshape(b, h, w, c).permute(0, 3, 1, 2).reshape(1, b * c, h, w)
    local = F.conv2d(grid, weights, padding=1, groups=b * c).reshape(b, c, h * w).transpose(1, 2)
    out = torch.cat([out[:, :1], out[:, 1:] + local], dim=1)
    return attn.proj(out)


def test_registered_names():
    assert set(list_models("inline_deit")) == set(VARIANTS)


def test_keys_and_shapes_are_the_official_manifest():
    model = _meta("inline_deit_tiny")
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert own == {k: tuple(s) for k, s in load_golden("inline_deit_tiny")["manifest"]}


def test_official_training_checkpoint_converts(official):
    """The official main.py saves {'model': ..., 'optimizer': ..., 'epoch': ..., 'config': ...}: the
    converter takes the model's tensors, unchanged (keys and shapes are the model's)."""
    ckpt = {"model": official, "optimizer": {"state": {}}, "epoch": 299, "max_accuracy": 74.5}
    model = _meta("inline_deit_tiny")
    converted = convert_inline_deit(ckpt, model)
    assert converted.keys() == model.state_dict().keys() == official.keys()
    assert all(converted[k] is official[k] for k in official)
    assert attnzoo.convert_official("inline_deit_tiny", ckpt).keys() == official.keys()
    # attnzoo's own state dict (what `attnzoo convert` writes) passes through
    own = model.state_dict()
    assert convert_inline_deit(dict(own), model).keys() == own.keys()


def test_official_checkpoint_file_loads(official_2, tmp_path: Path):
    sd = official_2
    path = tmp_path / "inline_deit_t.pth"
    torch.save({"model": sd, "epoch": 299}, path)
    model = timm.create_model(
        "inline_deit_tiny", depth=2, pretrained=True, pretrained_cfg_overlay=dict(file=str(path))
    )
    own = model.state_dict()
    assert own.keys() == sd.keys()
    for key, value in sd.items():
        torch.testing.assert_close(own[key], value, rtol=0, atol=0, msg=key)


def test_release_link_is_cached_under_the_model_name_and_loads(official_2, hub_cache):
    """TsinghuaCloud links end in '/?dl=1' (no file name): the file is looked up as <model>.in1k.pth
    and converted from the official keys on load."""
    weights = FAMILIES["inline_deit"].weights_for("inline_deit_tiny")
    url = weights.official_url.url
    assert url.startswith("https://cloud.tsinghua.edu.cn/f/") and url.endswith("/?dl=1")
    path = url_cache_path(weights, weights.official_url)
    path.parent.mkdir(parents=True)
    torch.save({"model": official_2}, path)
    model = timm.create_model("inline_deit_tiny", depth=2, pretrained=True)
    torch.testing.assert_close(model.state_dict()["head.weight"], official_2["head.weight"], rtol=0, atol=0)


@pytest.mark.parametrize(
    "name, what",
    [
        ("inline_deit_small", r"192 wide, 12 blocks, 6 heads \(inline_deit_tiny\), the model 320 wide"),
        (
            "inline_deit_base",
            r"\(inline_deit_tiny\), the model 384 wide, 12 blocks, 12 heads \(inline_deit_base",
        ),
    ],
)
def test_a_checkpoint_of_another_variant_is_refused(official, name, what):
    with pytest.raises(ValueError, match=what):
        convert_inline_deit({"model": official}, _meta(name))


def test_other_depths_heads_and_stray_keys_are_refused(official):
    model = _meta("inline_deit_tiny")
    shallow = {k: v for k, v in official.items() if not k.startswith("blocks.11.")}
    with pytest.raises(ValueError, match="11 blocks, 6 heads, the model 192 wide, 12 blocks"):
        convert_inline_deit(shallow, model)
    with pytest.raises(ValueError, match="192 wide, 12 blocks, 3 heads"):
        convert_inline_deit(official, _meta("inline_deit_tiny", num_heads=3))
    with pytest.raises(ValueError, match="unexpected keys"):
        convert_inline_deit({**official, "dist_token": torch.zeros(1, 1, 192)}, model)


def test_a_checkpoint_loads_at_another_image_size(official_2):
    """Built for 96 x 128 px, the 224 px checkpoint's pos_embed is resampled once by the converter; the
    result equals the 224 px model resampling on the fly."""
    at_224 = timm.create_model("inline_deit_tiny", depth=2).double().eval()
    at_224.load_state_dict(convert_inline_deit(official_2, at_224))
    other = timm.create_model("inline_deit_tiny", depth=2, img_size=(96, 128)).double().eval()
    converted = convert_inline_deit(official_2, other)
    assert converted["pos_embed"].shape == (1, 1 + 6 * 8, 192)
    other.load_state_dict(converted, strict=True)
    x = torch.randn(1, 3, 96, 128, dtype=torch.float64)
    with torch.no_grad(), use_kernels("torch"):
        torch.testing.assert_close(other(x), at_224(x), rtol=1e-12, atol=1e-12)


def test_residual_on_a_non_square_grid_is_the_official_convolution():
    torch.manual_seed(0)
    attn = InLineDeiTAttention(48, num_heads=3).double()
    h, w = 3, 5
    x = torch.randn(2, 1 + h * w, 48, dtype=torch.float64)
    attn.grid = (h, w)
    with use_kernels("torch"):
        got = attn(x)
        torch.testing.assert_close(got, _official_attention(attn, x, h, w), rtol=1e-12, atol=1e-12)
        attn.grid = (w, h)  # the same tokens on the transposed grid: a different residual
        assert not torch.allclose(attn(x), got, atol=1e-6)
        attn.grid = None  # alone, the layer takes the square grid the official code assumes
        square = torch.randn(1, 1 + 16, 48, dtype=torch.float64)
        torch.testing.assert_close(attn(square), _official_attention(attn, square, 4, 4))
        with pytest.raises(ValueError, match="15 patch tokens, which form no square grid"):
            attn(x)


def test_the_model_hands_each_block_the_padded_patch_grid():
    torch.manual_seed(0)
    model = InLineDeiT(img_size=64, patch_size=16, **SMALL).eval()
    seen = []
    model.blocks[1].attn.register_forward_pre_hook(lambda m, args: seen.append(m.grid))
    with torch.no_grad():
        model(torch.randn(1, 3, 40, 75))  # padded to 48 x 80 px: 3 x 5 patches
        model.forward_intermediates(torch.randn(1, 3, 75, 40))
    assert seen == [(3, 5), (5, 3)]


def test_fx_traced_features_follow_the_grid_of_each_input():
    """The grid hand-off is traced from the input's shape: a torch.fx extractor traced once gives the
    getter's maps at other sizes, a grid and its transpose included (the battery compares shapes only)."""
    kw = dict(embed_dim=48, num_heads=3, depth=2, features_only=True, out_indices=(0, 1))
    torch.manual_seed(0)
    getter = timm.create_model("inline_deit_tiny", **kw).eval()
    torch.manual_seed(0)
    traced = timm.create_model("inline_deit_tiny", feature_cls="fx", **kw).eval()
    for h, w in ((40, 75), (75, 40)):
        x = torch.randn(1, 3, h, w)
        with torch.no_grad():
            for tokens, fmap in zip(traced(x), getter(x), strict=True):
                torch.testing.assert_close(tokens[:, 1:].transpose(1, 2).reshape(fmap.shape), fmap)


def test_a_checkpointed_forward_meeting_another_grid_is_a_clear_error():
    torch.manual_seed(0)
    model = InLineDeiT(img_size=64, patch_size=16, **SMALL).train()
    model.set_grad_checkpointing(True)
    first = model(torch.randn(1, 3, 64, 64))
    model(torch.randn(1, 3, 32, 64))  # another grid before the first forward's backward
    with pytest.raises(ValueError, match="grid 2x4 does not hold its 16 patch tokens"):
        first.sum().backward()


def test_unsupported_options_are_refused():
    with pytest.raises(ValueError, match="patch_drop_rate"):
        InLineDeiT(patch_drop_rate=0.1, **SMALL)
    with pytest.raises(ValueError, match="own block and attention"):
        InLineDeiT(attn_layer="attn", **SMALL)
    with pytest.raises(ValueError, match="no q/k norm"):
        InLineDeiT(qk_norm=True, **SMALL)


@pytest.mark.parametrize(
    "name, params, readme_m",
    [
        ("inline_deit_tiny", 6_477_736, 6.5),
        ("inline_deit_small", 16_734_760, 16.7),
        ("inline_deit_base", 23_797_096, 23.8),
    ],
)
def test_parameter_counts_match_the_official_readme(name, params, readme_m):
    """The tiny count is its golden manifest's (the official model's); all round to the README's."""
    count = sum(p.numel() for p in _meta(name).parameters())
    assert count == params and round(count / 1e6, 1) == readme_m
    if name == "inline_deit_tiny":
        manifest = load_golden(name)["manifest"]
        assert count == sum(torch.Size(shape).numel() for _, shape in manifest)


@pytest.mark.parametrize(
    "name, size, width, heads, top1",
    [
        ("inline_deit_tiny", 224, 192, 6, 74.5),
        ("inline_deit_small", 288, 320, 10, 80.2),
        ("inline_deit_base", 448, 384, 12, 82.3),
    ],
)
def test_official_geometry_and_eval_cfg(name, size, width, heads, top1):
    model = _meta(name)
    assert (model.embed_dim, len(model.blocks), model.blocks[0].attn.num_heads) == (width, 12, heads)
    assert model.patch_embed.grid_size == (size // 16, size // 16)
    assert model.blocks[0].norm1.eps == 1e-6 and model.blocks[0].attn.qkv.bias is not None
    cfg = model.pretrained_cfg
    assert cfg["input_size"] == (3, size, size) and not cfg.get("fixed_input_size")
    # data/build.py: Resize((int(256 / 224 * s),) * 2) + CenterCrop(s), bicubic, ImageNet mean / std
    assert (cfg["crop_pct"], cfg["crop_mode"], cfg["interpolation"]) == (0.875, "squash", "bicubic")
    assert (cfg["mean"], cfg["std"]) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert cfg["license"] == "unknown" and cfg["tag"] == "in1k"
    assert any(f"top-1 {top1}" in note for note in cfg["notes"])
    assert any("never re-hosts" in note for note in cfg["notes"])

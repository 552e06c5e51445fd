"""ConViT: float64 equality with timm's convit, any-size inputs, features, errors, checkpointing."""

from __future__ import annotations

import pytest
import timm
import torch
from timm.models.convit import GPSA

import attnzoo
from attnzoo.backbones.convit import ConViT, convert_convit
from attnzoo.layers.gpsa import GatedPositionalSelfAttention, MultiHeadSelfAttention, relative_offsets
from attnzoo.zoo import list_models

# The official defaults (facebookresearch/convit convit.py): 10 GPSA blocks of 12, locality strength 1,
# every gating parameter 1, and GPSA's local init (v the identity, pos_proj a k x k kernel of offsets).
OFFICIAL_LOCAL_UP_TO_LAYER = 10
OFFICIAL_LOCALITY_STRENGTH = 1.0
OFFICIAL_GATING_INIT = 1.0
# Default tier: ConViT-Ti; slow tier: every variant.
VARIANTS = [
    n if n == "az_convit_tiny" else pytest.param(n, marks=pytest.mark.slow) for n in list_models("convit")
]


def _pair(**kwargs) -> tuple[torch.nn.Module, torch.nn.Module]:
    """timm's convit_tiny and ours with timm's weights, float64, eval."""
    torch.manual_seed(0)
    ref = timm.create_model("convit_tiny", **kwargs).double().eval()
    ours = timm.create_model("az_convit_tiny", **kwargs).double().eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


def test_equals_timm_convit_tiny_float64():
    ref, ours = _pair()
    # Non-trivial gating and biases so both terms of the gated attention matter.
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if name.endswith(("gating_param", "bias")):
                p.add_(0.3 * torch.randn_like(p))
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(1, 3, 224, 224, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want_feats, got_feats = ref.forward_features(x), ours.forward_features(x)
        want, got = ref.forward_head(want_feats), ours.forward_head(got_feats)
    assert (got_feats - want_feats).abs().max().item() < 1e-10
    assert (got - want).abs().max().item() < 1e-10
    # no state-dict buffers beyond timm's keys
    assert ours.state_dict().keys() == ref.state_dict().keys()


def test_other_sizes_classify():
    model = timm.create_model("az_convit_tiny", num_classes=5).eval()
    with torch.no_grad():
        for h, w in ((160, 192), (100, 130)):
            out = model(torch.randn(1, 3, h, w))
            assert out.shape == (1, 5) and torch.isfinite(out).all()


def test_rectangular_offsets_match_timm_on_square_grid():
    layer = GPSA(48, num_heads=4)
    want = layer.get_rel_indices(7 * 7)
    torch.testing.assert_close(relative_offsets((7, 7)), want, rtol=0, atol=0)
    table = relative_offsets((2, 3))  # row-major: patch 1 is (row 0, col 1), patch 5 is (row 1, col 2)
    assert table.shape == (1, 6, 6, 3)
    assert table[0, 1, 5].tolist() == [1.0, 1.0, 2.0]
    assert table[0, 5, 0].tolist() == [-2.0, -1.0, 5.0]


@pytest.mark.parametrize("heads", [4, 9, 6])
def test_local_init_matches_timm(heads):
    ref = GPSA(8 * heads, num_heads=heads, locality_strength=0.7)  # 6 heads: rows 4, 5 stay random
    ours = GatedPositionalSelfAttention(ref.dim, num_heads=heads, locality_strength=0.7)
    ours.load_state_dict(ref.state_dict())
    ref.local_init()
    ours.local_init()
    torch.testing.assert_close(ours.pos_proj.weight, ref.pos_proj.weight, rtol=0, atol=0)
    torch.testing.assert_close(ours.v.weight, ref.v.weight, rtol=0, atol=0)


def test_offsets_cache_is_not_state():
    layer = GatedPositionalSelfAttention(32, num_heads=4)
    layer(torch.randn(1, 12, 32), grid_size=(3, 4))
    assert set(layer.state_dict()) == {
        "qk.weight",
        "v.weight",
        "proj.weight",
        "proj.bias",
        "pos_proj.weight",
        "pos_proj.bias",
        "gating_param",
    }
    assert not list(layer.buffers())
    with pytest.raises(ValueError, match="grid_size"):
        layer(torch.randn(1, 12, 32))  # 12 tokens: no square grid


def test_forward_intermediates_shapes():
    model = timm.create_model("az_convit_tiny").eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        final, maps = model.forward_intermediates(x)
        torch.testing.assert_close(final, model.forward_features(x))
        assert len(maps) == 12 and all(m.shape == (2, 192, 4, 6) for m in maps)
        last = model.forward_intermediates(x, indices=[3, 11], norm=True, intermediates_only=True)
        assert [m.shape for m in last] == [(2, 192, 4, 6)] * 2
        torch.testing.assert_close(last[1], model.norm(maps[11].permute(0, 2, 3, 1)).permute(0, 3, 1, 2))
        nhwc = model.forward_intermediates(x, indices=2, output_fmt="NHWC", intermediates_only=True)
        torch.testing.assert_close(nhwc[1].permute(0, 3, 1, 2), maps[11])
        early = model.forward_intermediates(x, indices=[1], stop_early=True, intermediates_only=True)
        torch.testing.assert_close(early[0], maps[1])


def test_features_only_any_size():
    model = timm.create_model("az_convit_tiny", features_only=True).eval()
    assert model.feature_info.channels() == [192, 192, 192]
    assert model.feature_info.reduction() == [16, 16, 16]
    assert [i["module"] for i in model.feature_info.get_dicts()] == ["blocks.9", "blocks.10", "blocks.11"]
    with torch.no_grad():
        feats = model(torch.randn(1, 3, 100, 130))
    assert [tuple(f.shape) for f in feats] == [(1, 192, 7, 9)] * 3
    picked = timm.create_model("az_convit_tiny", features_only=True, out_indices=(2, 5)).eval()
    assert len(picked.model.blocks) == 6
    with torch.no_grad():
        assert [f.shape[-2:] for f in picked(torch.randn(1, 3, 48, 33))] == [(3, 3)] * 2


@pytest.mark.parametrize("local", [0, 3])
def test_class_token_joins_after_the_gpsa_blocks_also_at_the_ends(local):
    """No GPSA block (class token from the start) or only GPSA blocks (it joins after the last one)."""
    model = timm.create_model("az_convit_tiny", depth=3, local_up_to_layer=local).eval()
    assert sum(isinstance(blk.attn, GatedPositionalSelfAttention) for blk in model.blocks) == local
    x = torch.randn(1, 3, 40, 56)
    with torch.no_grad():
        final, maps = model.forward_intermediates(x)
        torch.testing.assert_close(final, model.forward_features(x))
    assert final.shape == (1, 1 + 3 * 4, 192)
    assert [m.shape for m in maps] == [(1, 192, 3, 4)] * 3
    with pytest.raises(NotImplementedError, match="mask"):
        model(x, is_causal=True)


def test_wrong_channel_count_raises():
    model = timm.create_model("az_convit_tiny").eval()
    with pytest.raises(ValueError, match=r"3 input channels, got 4 channels"):
        model(torch.randn(1, 4, 32, 32))
    with pytest.raises(ValueError, match="channels"):
        model.forward_intermediates(torch.randn(1, 1, 32, 32))


def test_grad_checkpointing_same_outputs_and_grads():
    torch.manual_seed(0)
    model = timm.create_model("az_convit_tiny", drop_path_rate=0.1, depth=4, local_up_to_layer=2).train()
    x = torch.randn(2, 3, 48, 64)

    def run():
        torch.manual_seed(3)
        model.zero_grad()
        out = model(x)
        out.square().mean().backward()
        return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    base_out, base_grads = run()
    model.set_grad_checkpointing(True)
    ckpt_out, ckpt_grads = run()
    torch.testing.assert_close(ckpt_out, base_out, rtol=0, atol=0)
    for n, g in base_grads.items():
        torch.testing.assert_close(ckpt_grads[n], g, msg=lambda m, n=n: f"{n}: {m}")


def test_converter_identity_and_mismatch():
    ref, ours = _pair()
    sd = dict(ref.state_dict())
    sd["blocks.0.attn.rel_indices"] = torch.zeros(1, 196, 196, 3)  # stray table some exports carry
    out = attnzoo.convert_official("az_convit_tiny", {"model": sd}, ours)
    assert out.keys() == ours.state_dict().keys()
    small = timm.create_model("az_convit_small")
    with pytest.raises(ValueError, match="shape mismatches"):
        convert_convit(ref.state_dict(), small)
    # a model built for another input size gets a resampled pos_embed
    at160 = timm.create_model("az_convit_tiny", img_size=160)
    at160.load_state_dict(convert_convit(ref.state_dict(), at160))
    assert isinstance(at160, ConViT) and at160.pos_embed.shape == (1, 100, 192)


def test_pretrained_cfgs():
    for name, top1 in (("tiny", 73.1), ("small", 81.3), ("base", 82.4)):
        cfg = timm.models.get_pretrained_cfg(f"az_convit_{name}.fb_in1k")
        assert cfg.hf_hub_id == f"timm/convit_{name}.fb_in1k"
        assert cfg.url == f"https://dl.fbaipublicfiles.com/convit/convit_{name}.pth"
        assert cfg.paper_ids == "arXiv:2103.10697" and cfg.license == "apache-2.0"
        assert any(str(top1) in n for n in cfg.notes)


def _kernel_rows(heads: int) -> torch.Tensor:
    """The local init's ``pos_proj`` rows: head p attends around the p-th offset (dx, dy) of a k x k kernel
    centred on the query (row-major over dx, then dy), as ``[2 dx, 2 dy, -1]`` times the locality strength."""
    k = int(heads**0.5)
    offsets = torch.arange(k, dtype=torch.float32) - (k - 1) / 2
    dx, dy = torch.meshgrid(offsets, offsets, indexing="ij")
    rows = torch.stack((2 * dx.flatten(), 2 * dy.flatten(), -torch.ones(k * k)), dim=1)
    return OFFICIAL_LOCALITY_STRENGTH * rows


def test_kernel_rows_of_four_heads():
    """ConViT-Ti's 2 x 2 kernel, written out: offsets of +-1/2 patch around the query."""
    want = torch.tensor([[-1.0, -1, -1], [-1, 1, -1], [1, -1, -1], [1, 1, -1]])
    torch.testing.assert_close(_kernel_rows(4), want, rtol=0, atol=0)


def _assert_official_init(model: ConViT) -> None:
    heads = model.blocks[0].attn.num_heads
    k2 = int(heads**0.5) ** 2
    for i, blk in enumerate(model.blocks):
        attn = blk.attn
        if i >= OFFICIAL_LOCAL_UP_TO_LAYER:
            assert type(attn) is MultiHeadSelfAttention, f"block {i} should be plain self-attention"
            continue
        assert isinstance(attn, GatedPositionalSelfAttention), f"block {i} should be GPSA"
        assert attn.locality_strength == OFFICIAL_LOCALITY_STRENGTH
        torch.testing.assert_close(attn.gating_param.detach(), torch.full((heads,), OFFICIAL_GATING_INIT))
        torch.testing.assert_close(attn.pos_proj.weight.detach()[:k2], _kernel_rows(heads), rtol=0, atol=0)
        torch.testing.assert_close(attn.pos_proj.bias.detach(), torch.zeros(heads), rtol=0, atol=0)
        torch.testing.assert_close(attn.v.weight.detach(), torch.eye(attn.dim), rtol=0, atol=0)


@pytest.mark.parametrize("name", VARIANTS)
def test_registered_models_start_at_the_official_init(name):
    """What is built, not the constructor's defaults: gating, locality strength and the local init."""
    model = timm.create_model(name)
    assert len(model.blocks) == 12 and model.local_up_to_layer == OFFICIAL_LOCAL_UP_TO_LAYER
    _assert_official_init(model)


def test_convit_built_directly_starts_at_the_official_init():
    model = ConViT(img_size=32, patch_size=16, embed_dim=36, depth=11, num_heads=9, num_classes=3)
    assert model.local_up_to_layer == OFFICIAL_LOCAL_UP_TO_LAYER
    _assert_official_init(model)

"""MALA: the converter's renames and checks, parameter counts, the dense form, any input size, and
the 2-D RoPE rule."""

from __future__ import annotations

import pytest
import timm
import torch

import attnzoo
from attnzoo.backbones.mala import FAMILY, MALA, convert_mala
from attnzoo.layers.rope import apply_rope_2d, rope_2d_frequencies, rope_2d_sin_cos
from tests.helpers.parity import load_golden, official_state_dict

TINY = dict(depths=(1, 1, 1, 1), embed_dims=(16, 32, 32, 64), num_heads=(1, 2, 2, 4), projection=48)


def _official(golden: str) -> dict[str, torch.Tensor]:
    """The golden's official state dict plus the per-stage RoPE tables the official model saves."""
    sd = {k: v.float() for k, v in official_state_dict(load_golden(golden)).items()}
    heads = {"mala_t": (1, 2, 4, 8), "mala_t_det": (1, 2, 4, 8)}[golden]
    for i, (width, h) in enumerate(zip((64, 128, 256, 512), heads, strict=True)):
        sd[f"layers.{i}.RoPE.angle"] = rope_2d_frequencies(width // h)
    return sd


def test_official_checkpoint_converts_with_its_rope_tables_and_conv_head():
    model = timm.create_model("mala_t")
    converted = convert_mala({"model": _official("mala_t")}, model)
    assert converted.keys() == {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    assert converted["head.weight"].shape == (1000, 2048)
    model.load_state_dict(converted, strict=False)
    # attnzoo's own keys (a checkpoint `attnzoo convert` wrote) pass through unchanged
    assert convert_mala(dict(model.state_dict()), model).keys() == model.state_dict().keys()


def test_a_wrong_rope_table_is_refused():
    sd = _official("mala_t")
    sd["layers.1.RoPE.angle"] = sd["layers.1.RoPE.angle"] * 2
    with pytest.raises(ValueError, match=r"layers\.1\.RoPE\.angle is not MALA's 2-D RoPE table"):
        convert_mala(sd, timm.create_model("mala_t"))


def test_detector_checkpoint_and_imagenet_checkpoint_load_into_the_dense_form():
    dense = timm.create_model("mala_t", **FAMILY.dense.forms["det"])
    official_det = _official("mala_t_det")
    ckpt = {"state_dict": {**{f"backbone.{k}": v for k, v in official_det.items()}, "neck.w": torch.ones(1)}}
    converted = attnzoo.convert_official("mala_t", ckpt, dense)
    dense.load_state_dict(converted, strict=True)
    # The classifier's checkpoint: its conv head stays behind; the extra norms are the dense form's own.
    from_cls = convert_mala(_official("mala_t"), dense)
    assert not any(k.startswith(("norm.", "head.")) for k in from_cls)
    missing = dense.load_state_dict(from_cls, strict=False).missing_keys
    assert missing and all(k.startswith("extra_norms.") for k in missing)


def test_a_checkpoint_of_another_variant_is_refused():
    with pytest.raises(ValueError, match="shape mismatches"):
        convert_mala(_official("mala_t"), timm.create_model("mala_s"))


@pytest.mark.parametrize(
    "name, millions", [("mala_t", 16.45), ("mala_s", 27.14), ("mala_b", 49.79), ("mala_l", 97.77)]
)
def test_parameter_counts_follow_the_official_builders(name, millions):
    """T and S equal their goldens' manifests (the official models); B and L follow the same builder."""
    with torch.device("meta"):
        model = timm.create_model(name)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == millions


def test_dense_form_returns_normed_stage_outputs_at_any_size():
    model = MALA(**TINY, dense_outputs=True).eval()
    x = torch.randn(2, 3, 61, 90)
    feats = model.forward_intermediates(x, intermediates_only=True)
    assert [tuple(f.shape[1:]) for f in feats] == [(16, 16, 23), (32, 8, 12), (32, 4, 6), (64, 2, 3)]
    for f in feats:  # LayerNorm over channels without affine drift: per-pixel mean 0
        assert f.mean(1).abs().max() < 1e-4
    assert not hasattr(model.norm, "conv") and isinstance(model.head, torch.nn.Identity)
    torch.testing.assert_close(model.forward_features(x), feats[-1])


def test_unknown_mixer_and_ragged_stage_args_are_refused():
    with pytest.raises(ValueError, match="unknown mixer"):
        MALA(**{**TINY, "mixers": ("linear", "linear", "flash", "softmax")})
    with pytest.raises(ValueError, match="num_heads needs one entry per stage"):
        MALA(**{**TINY, "num_heads": (1, 2)})


def test_rope_2d_rotates_rows_then_columns_and_keeps_norms():
    sin, cos = rope_2d_sin_cos(3, 5, 8, torch.float64, torch.device("cpu"))
    freq = rope_2d_frequencies(8).double()  # [1, 1, 1e-4, 1e-4]: both linspace ends
    assert torch.allclose(freq.float(), torch.tensor([1.0, 1.0, 1e-4, 1e-4]))
    token = 2 * 5 + 3  # row 2, column 3
    angles = torch.cat([2 * freq, 3 * freq])
    torch.testing.assert_close(sin[token], angles.sin())
    x = torch.randn(2, 15, 8, dtype=torch.float64)
    y = apply_rope_2d(x, sin, cos)
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))
    # pairs rotate as (x0, x1) -> x0 cos - x1 sin, x1 cos + x0 sin
    a, s, c = x[0, token], sin[token], cos[token]
    torch.testing.assert_close(
        y[0, token, :2], torch.stack([a[0] * c[0] - a[1] * s[0], a[1] * c[1] + a[0] * s[1]])
    )
    with pytest.raises(ValueError, match="divisible by 4"):
        rope_2d_frequencies(6)

"""The hierarchical skeleton on its own, through a toy family with a separate stem and a LayerNorm2d."""

from __future__ import annotations

import pytest
import torch
from timm.layers import LayerNorm2d
from timm.models import FeatureGraphNet
from torch import nn

from attnzoo.backbones._hierarchical import HierarchicalBackbone, ModuleNames, Stage


class Toy(HierarchicalBackbone):
    module_names = ModuleNames(stem="patch_embed", downsamples="merges")

    def __init__(self, widths=(8, 16, 24), num_classes: int = 5, device=None, dtype=None) -> None:
        dd = dict(device=device, dtype=dtype)
        super().__init__(
            stem=nn.Conv2d(3, widths[0], 4, stride=4, **dd),
            downsamples=[nn.Identity()]
            + [nn.Conv2d(a, b, 2, stride=2, **dd) for a, b in zip(widths[:-1], widths[1:], strict=True)],
            stages=[Stage(nn.Conv2d(w, w, 3, padding=1, **dd), nn.GELU()) for w in widths],
            norm=LayerNorm2d(widths[-1], **dd),
            widths=widths,
            reductions=(4, 8, 16),
            num_classes=num_classes,
            **dd,
        )


def test_official_names_are_the_state_dict_keys():
    keys = {k.split(".")[0] for k in Toy().state_dict()}
    assert keys == {"patch_embed", "merges", "stages", "norm", "head"}
    matcher = Toy().group_matcher()
    assert matcher["stem"] == "^patch_embed" and matcher["blocks"][1][0] == r"^merges\.(\d+)"


def test_stem_and_names_must_agree():
    with pytest.raises(ValueError, match="stem given iff"):
        HierarchicalBackbone(
            stem=None,
            downsamples=[nn.Identity()],
            stages=[Stage()],
            norm=nn.Identity(),
            widths=(3,),
            reductions=(1,),
        )


def test_intermediates_prune_and_head():
    torch.manual_seed(0)
    model = Toy().eval()
    x = torch.randn(2, 3, 50, 70)
    with torch.no_grad():
        final, maps = model.forward_intermediates(x, norm=True)
        torch.testing.assert_close(final, model.forward_features(x))
        torch.testing.assert_close(maps[-1], final)
        assert [m.shape[-2:] for m in maps] == [(12, 17), (6, 8), (3, 4)]
        early, inter = model.forward_intermediates(x, indices=[0], stop_early=True)
        torch.testing.assert_close(early, inter[0])
        assert model(x).shape == (2, 5)
    assert model.prune_intermediate_layers([0, 1]) == [0, 1]
    assert len(model.stages) == len(model.merges) == 2 and isinstance(model.norm, nn.Identity)
    assert model(x).shape == (2, 16, 6, 8)  # pruned head: no pooling, no classifier


def test_checkpointed_stages_still_fire_hooks_and_match():
    torch.manual_seed(0)
    model = Toy().train()
    x = torch.randn(2, 3, 32, 32)
    calls = []
    model.stages[1].register_forward_hook(lambda *_: calls.append(1))
    base = model(x)
    model.set_grad_checkpointing()
    ckpt = model(x)
    torch.testing.assert_close(ckpt, base)
    assert len(calls) == 2 and all(s.grad_checkpointing for s in model.stages)


def test_meta_device_reset_classifier_and_fx():
    with torch.device("meta"):
        meta = Toy()
    assert all(p.is_meta for p in meta.parameters())
    meta.eval().reset_classifier(3, global_pool="")
    assert meta.head.weight.is_meta and not meta.head.training and meta.global_pool == ""
    model = Toy().eval()
    traced = FeatureGraphNet(model, out_indices=(0, 1, 2))
    x = torch.randn(1, 3, 40, 56)
    with torch.no_grad():
        for got, want in zip(traced(x), model.forward_intermediates(x, intermediates_only=True), strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=0)

"""timm conformance battery, run over every model attnzoo registers (new families get it for free)."""

from __future__ import annotations

import math

import pytest
import timm
import torch

from attnzoo.zoo import list_models
from attnzoo.zoo.facts import smallest_variant_per_family

MODELS = list_models()
# Every model runs the checks that build it and run it once at 64 px. The costly checks (forwards at
# up to 131 px, backward passes, tracing) run by default on the smallest model of each family plus
# the forms those do not cover (another attention mode, token pruning, blockwise operators, timm's
# ByobNet stem), and on every model under `pytest -m slow` (docs/DESIGN.md, "Test tiers").
OTHER_FORMS = {
    "az_halonet26t",
    "infvit_pure_tiny_patch16_224",
    "karat_vit_tiny_g1b",
    "overlock_xt",  # the training structure (the smallest OverLoCK is the folded _reparam one)
    "sparsifiner_deit_t_tp",
}
DEFAULT_MODELS = {*smallest_variant_per_family(), *OTHER_FORMS}
COSTLY = [name if name in DEFAULT_MODELS else pytest.param(name, marks=pytest.mark.slow) for name in MODELS]
SMALL = 64  # input side for most checks: every attnzoo model must accept it


def make(name: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, **kwargs)


def image(h: int = SMALL, w: int | None = None, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, h, w or h, generator=torch.Generator().manual_seed(1))


def test_registry_is_not_empty():
    assert len(MODELS) >= 8
    assert OTHER_FORMS <= set(MODELS), "a default-tier model was renamed or removed"


@pytest.mark.parametrize("name", MODELS)
def test_create_by_name_and_classify(name):
    assert name in timm.list_models(), "not registered with timm"
    model = make(name, num_classes=7).eval()
    with torch.no_grad():
        out = model(image())
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", MODELS)
def test_reset_classifier_and_forward_head(name):
    model = make(name).eval()
    with torch.no_grad():
        feats = model.forward_features(image())
        assert model.forward_head(feats).shape == (2, 1000)
        pre = model.forward_head(feats, pre_logits=True)
        assert pre.shape == (2, model.num_features)
        model.reset_classifier(3)
        assert model.num_classes == 3
        assert model(image()).shape == (2, 3)
        model.reset_classifier(0)
        assert model(image()).shape == (2, model.num_features)


@pytest.mark.parametrize("name", COSTLY)
def test_features_only_matches_feature_info(name):
    model = make(name, features_only=True).eval()
    info = model.feature_info
    with torch.no_grad():
        feats = model(image(SMALL * 2))
    assert len(feats) == len(info.channels()) > 0
    for f, ch, red in zip(feats, info.channels(), info.reduction(), strict=True):
        assert f.shape[1] == ch
        assert f.shape[-2:] == (SMALL * 2 // red, SMALL * 2 // red), f"stride {red}: got {tuple(f.shape)}"


@pytest.mark.parametrize("name", COSTLY)
@pytest.mark.parametrize("size", [(97, 131), (75, 64)])
def test_features_only_any_size(name, size):
    """Detection-style inputs: non-square, not a multiple of any window; maps are ceil(size / stride)."""
    model = make(name, features_only=True).eval()
    h, w = size
    with torch.no_grad():
        feats = model(image(h, w, batch=1))
    for f, red in zip(feats, model.feature_info.reduction(), strict=True):
        assert f.shape[-2:] == (math.ceil(h / red), math.ceil(w / red)), f"stride {red}: {tuple(f.shape)}"
        assert torch.isfinite(f).all()


@pytest.mark.parametrize("name", COSTLY)
def test_forward_intermediates(name):
    model = make(name).eval()
    x = image()
    with torch.no_grad():
        final, inter = model.forward_intermediates(x)
        only = model.forward_intermediates(x, intermediates_only=True)
        torch.testing.assert_close(final, model.forward_features(x))
    assert len(inter) == len(only) == len(model.feature_info)
    for t, o, info in zip(inter, only, model.feature_info, strict=True):
        torch.testing.assert_close(t, o)
        assert t.dim() == 4 and t.shape[1] == info["num_chs"]
        assert t.shape[-1] == SMALL // info["reduction"]
    last = model.forward_intermediates(x, indices=1, intermediates_only=True)
    assert len(last) == 1


@pytest.mark.parametrize("name", COSTLY)
def test_grad_checkpointing_same_output_and_grads(name):
    model = make(name).train()
    x = image()

    def run():
        model.zero_grad()
        out = model(x)
        out.square().mean().backward()
        return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    base_out, base_grads = run()
    model.set_grad_checkpointing(True)
    ckpt_out, ckpt_grads = run()
    torch.testing.assert_close(ckpt_out, base_out)
    assert ckpt_grads.keys() == base_grads.keys()
    for n in base_grads:
        torch.testing.assert_close(ckpt_grads[n], base_grads[n], msg=lambda m, n=n: f"{n}: {m}")


@pytest.mark.parametrize("name", MODELS)
def test_no_weight_decay_names_parameters(name):
    model = make(name)
    skip = model.no_weight_decay()
    assert isinstance(skip, set) and skip
    params = {n for n, _ in model.named_parameters()}
    assert skip <= params, f"not parameters: {sorted(skip - params)[:5]}"


@pytest.mark.parametrize("name", MODELS)
def test_pretrained_cfg(name):
    model = make(name)
    cfg = model.pretrained_cfg
    for field in (
        "architecture",
        "input_size",
        "mean",
        "std",
        "num_classes",
        "first_conv",
        "classifier",
        "license",
    ):
        assert cfg.get(field) is not None, f"pretrained_cfg lacks {field}"
    assert cfg["architecture"] == name
    modules = dict(model.named_modules())
    assert cfg["first_conv"] in modules and cfg["classifier"] in modules
    tags = timm.list_pretrained(f"{name}.*")
    if not tags:  # no released weights: the cfg must say so rather than point nowhere
        assert cfg.get("tag") == "untrained", "no weight source and not declared untrained"
    for tag in tags:
        src = timm.models.get_pretrained_cfg(tag)
        assert src.hf_hub_id or src.url, f"{tag} names no weight source"


@pytest.mark.parametrize("name", MODELS)
def test_wrong_channel_count_is_a_clear_error(name):
    model = make(name).eval()
    with pytest.raises((ValueError, RuntimeError), match="channels"):
        model(torch.randn(1, 4, SMALL, SMALL))


# ----------------------------------------------------------------------------- the rest of timm's contract
@pytest.mark.parametrize("name", MODELS)
def test_builds_on_the_meta_device(name):
    """timm builds big models under ``torch.device('meta')`` (no weight memory): no tensor compute at init."""
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False)
    assert all(p.is_meta for p in model.parameters())


@pytest.mark.parametrize("name", MODELS)
def test_reset_classifier_keeps_the_train_eval_mode(name):
    model = make(name).eval()
    model.reset_classifier(3)
    assert not any(m.training for m in model.modules()), "a new head trains inside an eval model"
    model.train()
    model.reset_classifier(4)
    assert all(m.training for m in model.modules())


@pytest.mark.parametrize("name", COSTLY)
def test_forward_hooks_on_feature_modules_fire(name):
    """Hooks on the modules feature_info names (Grad-CAM, ``feature_cls='hook'``) see every forward."""
    model = make(name).eval()
    calls = {info["module"]: 0 for info in model.feature_info}

    def count(module_name):
        def hook(module, args, output):
            calls[module_name] += 1

        return hook

    for module_name in calls:
        model.get_submodule(module_name).register_forward_hook(count(module_name))
    with torch.no_grad():
        model(image())
    assert calls == dict.fromkeys(calls, 1)


@pytest.mark.parametrize("name", COSTLY)
def test_fx_feature_extraction(name):
    """``feature_cls='fx'`` traces the model with torch.fx; its maps equal the default extractor's."""
    x = image()
    getter = make(name, features_only=True).eval()
    traced = make(name, features_only=True, feature_cls="fx").eval()
    with torch.no_grad():
        want, got = getter(x), traced(x)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.shape[0] == x.shape[0] and torch.isfinite(g).all()
        if g.dim() == 4:  # plain ViTs give block tokens through fx, maps through the getter
            torch.testing.assert_close(g, w)

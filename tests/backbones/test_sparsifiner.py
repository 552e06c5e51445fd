"""Sparsifiner: the official geometry and keys, the key budget, token pruning, DeiT weights, any size."""

from __future__ import annotations

import math

import pytest
import timm
import torch

import attnzoo
from attnzoo.backbones.sparsifiner import SparsifinerViT
from attnzoo.kernels import use_kernels
from attnzoo.layers import SparsifinerAttention
from attnzoo.zoo import list_models
from tests.helpers.parity import load_golden, official_state_dict


def _deit_pair(keep: float) -> tuple[torch.nn.Module, torch.nn.Module]:
    """A timm DeiT-Ti (depth 3) and a Sparsifiner with its weights, float64, eval."""
    kw = dict(depth=3, img_size=64, num_classes=5)
    deit = timm.create_model("deit_tiny_patch16_224", **kw).double().eval()
    model = timm.create_model("sparsifiner_deit_t", attn_keep_rate=keep, **kw).double().eval()
    result = model.load_state_dict(
        attnzoo.convert_official("sparsifiner_deit_t", deit.state_dict()), strict=False
    )
    assert not result.unexpected_keys
    assert all(".mask_predictor." in key for key in result.missing_keys) and result.missing_keys
    return deit, model


def test_registered_names():
    want = {f"sparsifiner_deit_{g}{tp}" for g in "tsb" for tp in ("", "_tp")}
    assert set(list_models("sparsifiner")) == want


def test_official_geometry_and_state_dict_keys():
    golden = load_golden("sparsifiner_deit_s")
    with torch.device("meta"):
        model = timm.create_model("sparsifiner_deit_s")
    shapes = {key: list(value.shape) for key, value in model.state_dict().items()}
    assert shapes == dict(golden["manifest"])
    predictor = model.blocks[0].attn.mask_predictor
    assert predictor.budget(197) == 50 and predictor.scale == 6**-0.5 and predictor.basis_topk == 8


def test_keep_rate_one_is_dense_deit():
    """With every key kept the sparse rows are softmax attention: the model is the DeiT it loaded."""
    deit, model = _deit_pair(1.0)
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad(), use_kernels("torch"):
        torch.testing.assert_close(model(x), deit(x), rtol=1e-10, atol=1e-10)


def test_sparse_rows_attend_to_exactly_the_budget():
    """At keep rate 0.25 the output differs from dense DeiT, and each query uses ceil(0.25 N) keys."""
    deit, model = _deit_pair(0.25)
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad(), use_kernels("torch"):
        assert not torch.allclose(model(x), deit(x), atol=1e-6)
    attn = model.blocks[0].attn
    q = k = torch.randn(1, attn.num_heads, 17, attn.head_dim, dtype=torch.float64)
    idx = attn.mask_predictor(q, k)
    assert idx.shape == (1, attn.num_heads, 16, math.ceil(0.25 * 17))
    assert all(len(set(row.tolist())) == idx.shape[-1] for row in idx.reshape(-1, idx.shape[-1]))


def test_token_pruning_zero_fills_the_official_budgets():
    """Blocks 3 / 6 / 9 keep ceil(0.7^j * 196) = 138 / 97 / 68 patch tokens; the rest are zero."""
    model = timm.create_model("sparsifiner_deit_t_tp").eval()
    with torch.no_grad():
        feats = model.forward_intermediates(
            torch.randn(2, 3, 224, 224), output_fmt="NLC", intermediates_only=True
        )
    live = [f.ne(0).any(-1).sum(-1) for f in feats]
    want = [196] * 3 + [138] * 3 + [97] * 3 + [68] * 3
    for i, (got, n) in enumerate(zip(live, want, strict=True)):
        assert got.tolist() == [n, n], f"block {i}"


def test_non_pruning_model_keeps_every_token():
    model = timm.create_model("sparsifiner_deit_t", depth=4).eval()
    with torch.no_grad():
        feats = model.forward_intermediates(
            torch.randn(1, 3, 96, 96), output_fmt="NLC", intermediates_only=True
        )
    assert all(f.ne(0).any(-1).all() for f in feats)


def test_converter_resamples_for_another_image_size():
    golden = load_golden("sparsifiner_deit_s")
    model = timm.create_model("sparsifiner_deit_s", img_size=288, depth=12)
    converted = attnzoo.convert_official("sparsifiner_deit_s", official_state_dict(golden), model)
    model.load_state_dict(converted, strict=True)
    assert model.blocks[0].attn.mask_predictor.proj_n.shape == (18 * 18 + 1, 32)
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 288, 288)).shape == (1, 1000)


def test_checkpoint_that_does_not_match_is_named():
    state = timm.create_model("sparsifiner_deit_t", depth=2).state_dict()
    model = timm.create_model("sparsifiner_deit_s", depth=2)
    with pytest.raises((ValueError, RuntimeError), match="blocks.0"):
        attnzoo.convert_official("sparsifiner_deit_s", state, model)


def test_training_step_reaches_qkv_and_leaves_the_frozen_predictor():
    model = timm.create_model("sparsifiner_deit_t", depth=2, num_classes=3, img_size=64)
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    attn = model.blocks[0].attn
    assert attn.qkv.weight.grad is not None and attn.qkv.weight.grad.abs().sum() > 0
    assert model.predictor_parameters() and not any(p.requires_grad for p in model.predictor_parameters())
    assert all(p.grad is None for p in attn.mask_predictor.parameters())


def test_reconstruction_phase_trains_only_the_predictors():
    """The official first phase: the predictors fit the dense attention; the loss goes down."""
    torch.manual_seed(0)
    model = timm.create_model("sparsifiner_deit_t", depth=2, img_size=64)
    before = {k: v.clone() for k, v in model.state_dict().items() if ".mask_predictor." not in k}
    params = model.predictor_parameters()
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=1e-2)
    x = torch.randn(4, 3, 64, 64)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = model.attention_reconstruction_loss(x)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())


def test_layer_refuses_what_it_does_not_do():
    with pytest.raises(ValueError, match="attention dropout"):
        SparsifinerAttention(64, num_heads=2, attn_drop=0.1)
    with pytest.raises(ValueError, match="token_pruning_loc"):
        SparsifinerViT(depth=2, embed_dim=64, num_heads=2, token_pruning_loc=(5,))
    layer = SparsifinerAttention(64, num_heads=2, num_tokens=17)
    with pytest.raises(NotImplementedError, match="mask"):
        layer(torch.randn(1, 17, 64), attn_mask=torch.ones(17, 17, dtype=torch.bool))


def test_onnx_graph_is_exact_on_the_dense_path(tmp_path):
    """The export check allows top-k flips (``onnx_rtol``); with every key kept there are none, so the
    exported graph must match torch to float32 rounding."""
    from attnzoo.zoo.export import export_onnx

    torch.manual_seed(0)
    model = timm.create_model("sparsifiner_deit_t", depth=2, attn_keep_rate=1.0).eval()
    report = export_onnx(model, tmp_path / "dense.onnx", img_size=96, rtol=0.0, atol=1e-5)
    assert report.max_abs_diff <= 1e-5


def test_ties_go_to_the_lower_key_index():
    from attnzoo.layers.sparsifiner import top_keys

    scores = torch.tensor([[0.0, 1.0, 0.0, 0.0, 1.0, 0.0]])
    assert top_keys(scores, 4).tolist() == [[1, 4, 0, 2]]

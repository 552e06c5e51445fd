"""KArAt (Fourier-KArAt ViTs): the paper's parameter counts, universal sharing, training, any input size,
conversion across image sizes and the dense layout of the shared operator."""

from __future__ import annotations

import copy
import re

import pytest
import timm
import torch

from attnzoo.backbones import FAMILIES
from attnzoo.backbones.karat import KArAtViT, convert_karat
from attnzoo.kernels import use_kernels
from attnzoo.layers import FourierKArAtAttention, FourierOperator
from attnzoo.zoo import list_models

# Parameters in millions at the paper's setting (10 classes, 224 px, N = 197, r = 12) as it prints
# them (two decimals): the two counts we could read (quoted in the issue). The other variants are held
# to the (2G + 3) r N per head and operator formula below, which these two confirm; not to the paper.
PUBLISHED_PARAMS_M = {"karat_vit_tiny_g3b": 6.29, "karat_vit_tiny_g3u": 5.59}
VARIANTS = [f"karat_vit_{size}_g{g}{s}" for size in ("tiny", "small", "base") for g in (1, 3) for s in "bu"]
TINY = "karat_vit_tiny_g3u"


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registered_names():
    assert set(list_models("karat")) == set(VARIANTS)


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS_M))
def test_parameter_count_matches_the_paper(name):
    with torch.device("meta"):
        model = timm.create_model(name, num_classes=10)
    assert round(_count(model) / 1e6, 2) == PUBLISHED_PARAMS_M[name]


@pytest.mark.parametrize("name", VARIANTS)
def test_parameter_count_is_the_vit_plus_the_operators(name):
    with torch.device("meta"):
        model = timm.create_model(name, num_classes=10)
    with torch.device("meta"):
        vit = timm.create_model(
            re.sub(r"karat_vit_(\w+)_g\d[bu]", r"vit_\1_patch16_224", name), num_classes=10
        )
    g, heads, blocks = model.karat_grid, model.blocks[0].attn.num_heads, len(model.blocks)
    operators = blocks if model.sharing == "blockwise" else 1
    assert _count(model) - _count(vit) == operators * heads * (2 * g + 3) * 12 * 197


def test_universal_is_one_tensor_set_in_state_dict_and_parameters():
    torch.manual_seed(0)
    model = timm.create_model(TINY, img_size=64, num_classes=3)
    ops = {id(blk.attn.operator) for blk in model.blocks}
    assert ops == {id(model.karat)}
    keys = list(model.state_dict())
    assert [k for k in keys if "fourier" in k] == ["karat.fourier"]
    assert len(keys) == len(set(keys))
    names = [n for n, _ in model.named_parameters(remove_duplicate=False)]
    assert len(names) == len(set(names))  # no second path to the shared tensors
    blockwise = timm.create_model("karat_vit_tiny_g3b", img_size=64, num_classes=3)
    assert [k for k in blockwise.state_dict() if k.endswith("fourier")] == [
        f"blocks.{i}.attn.karat.fourier" for i in range(12)
    ]
    # deepcopy keeps one shared operator, the copy's own
    twin = copy.deepcopy(model)
    assert {id(blk.attn.operator) for blk in twin.blocks} == {id(twin.karat)} != ops


def test_universal_gradient_accumulates_from_every_block():
    """The shared operator's gradient is the sum of what each block gives a private copy of it."""
    torch.manual_seed(0)
    shared = timm.create_model(TINY, img_size=32, num_classes=3, depth=3)
    private = timm.create_model("karat_vit_tiny_g3b", img_size=32, num_classes=3, depth=3)
    state = shared.state_dict()
    op_state = {k.removeprefix("karat."): v for k, v in state.items() if k.startswith("karat.")}
    rest = {k: v for k, v in state.items() if not k.startswith("karat.")}
    private.load_state_dict(rest, strict=False)
    for blk in private.blocks:
        blk.attn.karat.load_state_dict(op_state)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(private(x), shared(x))
    shared(x).square().sum().backward()
    private(x).square().sum().backward()
    for name, p in shared.karat.named_parameters():
        total = sum(dict(blk.attn.karat.named_parameters())[name].grad for blk in private.blocks)
        torch.testing.assert_close(p.grad, total, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", [TINY, "karat_vit_tiny_g1b"])
def test_training_steps_reduce_the_loss(name):
    torch.manual_seed(0)
    model = timm.create_model(name, img_size=32, num_classes=4, depth=4).train()
    x = torch.randn(8, 3, 32, 32)
    y = torch.arange(8) % 4
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(10):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
    assert all(p.grad is not None for n, p in model.named_parameters() if "karat" in n)


def test_any_input_size_uses_the_patch_grid():
    torch.manual_seed(0)
    model = timm.create_model(TINY, num_classes=5).eval()
    for h, w in ((97, 131), (64, 80), (224, 224), (16, 16)):
        out = model(torch.randn(1, 3, h, w))
        assert out.shape == (1, 5) and torch.isfinite(out).all()
        assert model.karat.token_grid == (-(-h // 16), -(-w // 16))


def test_kernel_and_reference_paths_agree_on_the_model():
    torch.manual_seed(0)
    model = timm.create_model(TINY, img_size=48, num_classes=3, depth=2)
    x = torch.randn(2, 3, 48, 64)  # 3 x 4 patches: a resampled, non-square operator
    outs = []
    for backend in ("torch", "triton"):
        with use_kernels(backend):
            outs.append(model(x))
    torch.testing.assert_close(outs[1], outs[0], atol=1e-4, rtol=1e-4)


def test_converter_resamples_operators_for_another_img_size():
    torch.manual_seed(0)
    src = timm.create_model("karat_vit_tiny_g1b", num_classes=3, depth=2)
    dst = timm.create_model("karat_vit_tiny_g1b", num_classes=3, depth=2, img_size=64)
    state = convert_karat(src.state_dict(), dst)
    dst.load_state_dict(state)
    assert dst.blocks[0].attn.karat.fourier.shape[3] == 17
    torch.testing.assert_close(
        state["blocks.1.attn.karat.token_proj"][:, 0], src.blocks[1].attn.karat.token_proj[:, 0]
    )
    # the same checkpoint at 64 px: the operator the 224 px model resamples on the fly
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(dst.eval()(x), src.eval()(x), atol=1e-5, rtol=1e-5)


def test_dense_layout_places_every_parameter():
    layout = FAMILIES["karat"].dense
    patterns = [re.compile(p) for p in (layout.stem, layout.stage, layout.last)]
    for name in (TINY, "karat_vit_tiny_g3b"):
        with torch.device("meta"):
            model = timm.create_model(name, features_only=True)
        for param_name, _ in model.named_parameters():
            own = param_name.removeprefix("model.")
            assert any(p.match(own) for p in patterns), own


def test_model_classes():
    with torch.device("meta"):
        model = timm.create_model("karat_vit_small_g1u")
    assert isinstance(model, KArAtViT) and model.embed_dim == 384 and model.sharing == "universal"
    assert isinstance(model.blocks[0].attn, FourierKArAtAttention)
    assert isinstance(model.karat, FourierOperator) and model.karat.grid == 1 and model.karat.rank == 12
    with pytest.raises(ValueError, match="sharing"):
        KArAtViT(sharing="global")

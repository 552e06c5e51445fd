"""InfiniteSelfAttention: the official math from q/k/v/out weights, Triton path, rho, swap_attention."""

import pytest
import timm
import torch
from timm.layers import Attention, create_feature_extractor

from attnzoo.kernels import use_kernels
from attnzoo.layers import InfiniteSelfAttention, swap_attention
from tests.helpers.kernel_check import DEVICE


def official_formula(layer: InfiniteSelfAttention, x: torch.Tensor, drop=lambda a: a) -> torch.Tensor:
    """The official InfSAAttention forward written out from its separate q/k/v/out projections;
    ``drop`` stands for the attention dropout, applied to the weights (rho included)."""
    B, N, C = x.shape
    H, D = layer.num_heads, layer.head_dim
    wq, wk, wv = layer.qkv.weight.chunk(3)
    bq, bk, bv = layer.qkv.bias.chunk(3)

    def heads(w, b):
        return torch.nn.functional.linear(x, w, b).view(B, N, H, D).transpose(1, 2)

    q, k, v = heads(wq, bq) * D**-0.5, heads(wk, bk) * D**-0.5, heads(wv, bv)
    rho = torch.sigmoid(layer.rho_logit).item()
    if layer.mode == "pure":
        a = torch.relu(q @ k.transpose(-1, -2))
        a = rho * a / (a.flatten(-2).norm(dim=-1)[..., None, None] + 1e-6)
        o = drop(a) @ v
    else:
        e = q.norm(dim=-1)
        w = e / (e.sum(-1, keepdim=True) + 1e-6)
        q_bar = torch.einsum("bhn,bhnd->bhd", w, q)
        a = torch.relu(torch.einsum("bhd,bhnd->bhn", q_bar, k))
        a = rho * a / (a.sum(-1, keepdim=True) + 1e-6)
        o = (drop(a)[..., None] * v).sum(-2, keepdim=True).expand_as(v)
    return layer.proj(o.transpose(1, 2).reshape(B, N, C))


def make(mode: str, dim: int = 32, heads: int = 4, dtype=torch.float64) -> InfiniteSelfAttention:
    torch.manual_seed(0)
    layer = InfiniteSelfAttention(dim, heads, mode=mode, qkv_bias=True).to(dtype)
    with torch.no_grad():
        layer.qkv.bias.normal_(0, 0.3)
        layer.rho_logit.fill_(0.4)
    return layer


@pytest.mark.parametrize("mode", ["pure", "linear"])
def test_equals_the_official_math_float64(mode):
    layer = make(mode).eval()
    x = torch.randn(2, 23, 32, dtype=torch.float64)
    with use_kernels("torch"), torch.no_grad():
        out = layer(x)
    want = official_formula(layer, x)
    torch.testing.assert_close(out, want, rtol=0, atol=1e-13)
    if mode == "linear":  # one vector for every token
        torch.testing.assert_close(out, out[:, :1].expand_as(out), rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["pure", "linear"])
def test_triton_path_matches_reference_with_gradients(mode):
    layer = make(mode, dtype=torch.float32).to(DEVICE)
    x = torch.randn(2, 37, 32, device=DEVICE, requires_grad=True)
    params = [x, *layer.parameters()]
    with use_kernels("torch"):
        ref = layer(x)
        ref_grads = torch.autograd.grad(ref.square().sum(), params)
    with use_kernels("triton"):
        out = layer(x)
        grads = torch.autograd.grad(out.square().sum(), params)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=2e-5)
    names = ["x", *(n for n, _ in layer.named_parameters())]
    for name, g, r in zip(names, grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, atol=1e-4, rtol=1e-4, msg=lambda m, name=name: f"{name}: {m}")
    assert ref_grads[names.index("rho_logit")].abs() > 0, "rho must train"


@pytest.mark.parametrize("mode", ["pure", "linear"])
def test_compiles_without_graph_breaks(mode):
    """rho is a tensor (the official .item() forces a graph break): fullgraph compile works."""
    layer = make(mode, dtype=torch.float32).eval()
    x = torch.randn(1, 9, 32)
    compiled = torch.compile(layer, fullgraph=True, backend="eager")
    with use_kernels("torch"), torch.no_grad():
        torch.testing.assert_close(compiled(x), layer(x))


@pytest.mark.parametrize("mode", ["pure", "linear"])
def test_attention_dropout_only_in_training(mode):
    layer = InfiniteSelfAttention(16, 2, mode=mode, attn_drop=0.5)
    x = torch.randn(1, 10, 16)
    with use_kernels("torch"):
        layer.eval()
        a, b = layer(x), layer(x)
        torch.testing.assert_close(a, b)
        layer.train()
        torch.manual_seed(0)
        c = layer(x)
    assert not torch.allclose(a, c)


class FixedMask(torch.nn.Dropout):
    """Attention dropout with a fixed mask, so the training path's math can be compared exactly."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__(p=0.5)
        self.mask = mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask


@pytest.mark.parametrize("mode", ["pure", "linear"])
def test_dropout_path_is_the_official_math(mode):
    """In training with attention dropout the weights are materialised and dropped: the result is the
    official formula with the same mask on its weights, rho (0.6 here) included."""
    layer = make(mode).train()
    b, n = 2, 23
    weights = (b, layer.num_heads, n, n) if mode == "pure" else (b, layer.num_heads, n)
    gen = torch.Generator().manual_seed(0)
    mask = (torch.rand(weights, generator=gen, dtype=torch.float64) > 0.3) / 0.7
    layer.attn_drop = FixedMask(mask)
    x = torch.randn(b, n, 32, dtype=torch.float64)
    with use_kernels("torch"):
        out = layer(x)
    want = official_formula(layer, x, drop=lambda a: a * mask)
    torch.testing.assert_close(out, want, rtol=0, atol=1e-13)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="mode must be one of"):
        InfiniteSelfAttention(16, 2, mode="softmax")
    with pytest.raises(ValueError, match="not divisible"):
        InfiniteSelfAttention(30, 4)
    with pytest.raises(ValueError, match="rho_init"):
        InfiniteSelfAttention(16, 2, rho_init=1.0)
    with pytest.raises(NotImplementedError, match="mask"):
        InfiniteSelfAttention(16, 2)(torch.randn(1, 4, 16), attn_mask=torch.ones(4, 4, dtype=torch.bool))


def _small_vit(**kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model(
        "vit_tiny_patch16_224", img_size=32, patch_size=8, depth=3, num_classes=5, **kwargs
    ).eval()


@pytest.mark.parametrize("mode", ["pure", "linear"])
def test_swap_attention_on_a_timm_vit(mode):
    vit = _small_vit()
    before = {n: p.detach().clone() for n, p in vit.named_parameters()}
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        softmax_out = vit(x)
    assert swap_attention(vit, mode=mode, rho_init=0.8) is vit
    swapped = [m for m in vit.modules() if isinstance(m, InfiniteSelfAttention)]
    assert len(swapped) == 3 and not any(type(m) is Attention for m in vit.modules())
    after = dict(vit.named_parameters())
    assert set(after) == set(before) | {f"blocks.{i}.attn.rho_logit" for i in range(3)}
    for name, value in before.items():  # qkv / proj (and everything else) kept their weights
        torch.testing.assert_close(after[name], value, rtol=0, atol=0)
    for m in swapped:
        assert m.mode == mode and not m.training
        torch.testing.assert_close(m.rho, torch.tensor(0.8))
    with torch.no_grad():
        out = vit(x)
    assert out.shape == softmax_out.shape and torch.isfinite(out).all()
    assert not torch.allclose(out, softmax_out)
    vit.train()
    vit(x).sum().backward()
    assert all(m.rho_logit.grad is not None for m in swapped)


def test_swap_attention_keeps_qk_norm_and_honours_predicate():
    vit = _small_vit(qk_norm=True)
    q_norm = vit.blocks[1].attn.q_norm
    swap_attention(vit, predicate=lambda name, m: type(m) is Attention and name.startswith("blocks.1."))
    assert type(vit.blocks[0].attn) is Attention and type(vit.blocks[2].attn) is Attention
    assert isinstance(vit.blocks[1].attn, InfiniteSelfAttention) and vit.blocks[1].attn.q_norm is q_norm
    with pytest.raises(ValueError, match="no attention module"):
        swap_attention(torch.nn.Sequential(torch.nn.Linear(2, 2)))


@pytest.mark.parametrize("mode", ["pure", "linear"])
def test_swapped_vit_traces_with_torch_fx(mode):
    """timm's fx feature extraction traces through the layer (the ops and the mask check are leaf calls)."""
    vit = swap_attention(_small_vit(), mode=mode)
    traced = create_feature_extractor(vit, ["head"])
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(traced(x)["head"], vit(x))

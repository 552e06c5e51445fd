"""Fourier-KArAt attention layer: timm Block drop-in, kernel == reference, token resampling, sharing."""

from __future__ import annotations

import pytest
import torch
from timm.models.vision_transformer import Block

from attnzoo.kernels import use_kernels
from attnzoo.layers import FourierKArAtAttention, FourierOperator
from attnzoo.layers.token_tables import resample_tokens
from tests.helpers.kernel_check import DEVICE


def _layer(**kwargs) -> FourierKArAtAttention:
    torch.manual_seed(0)
    kwargs = {"grid": 2, "rank": 4, "num_tokens": 17, **kwargs}
    return FourierKArAtAttention(32, num_heads=2, qkv_bias=True, **kwargs)


def test_parameter_layout_is_2g_plus_3_r_n_per_head():
    op = FourierOperator(num_heads=3, grid=3, rank=12, num_tokens=197)
    assert op.base_grid == (14, 14)
    shapes = {n: tuple(p.shape) for n, p in op.named_parameters()}
    assert shapes == {
        "fourier": (3, 2, 12, 197, 3),
        "base_weight": (3, 12, 197),
        "edge_scale": (3, 12, 197),
        "token_proj": (3, 197, 12),
    }
    assert sum(p.numel() for p in op.parameters()) == 3 * (2 * 3 + 3) * 12 * 197


def test_drops_into_timm_block():
    torch.manual_seed(0)
    block = Block(32, num_heads=2, qkv_bias=True, attn_layer=FourierKArAtAttention)
    assert isinstance(block.attn, FourierKArAtAttention)
    assert block.attn.operator.num_tokens == 197
    x = torch.randn(2, 197, 32)
    assert block(x).shape == x.shape


@pytest.mark.parametrize("n_tokens", [17, 10])
def test_kernel_path_equals_reference_path(n_tokens):
    """Forced Triton vs forced torch through the whole layer (resampled operator at 10 tokens)."""
    layer = _layer().to(DEVICE)
    x = torch.randn(2, n_tokens, 32, device=DEVICE)
    outs, grads = [], []
    for backend in ("torch", "triton"):
        layer.zero_grad()
        with use_kernels(backend):
            out = layer(x)
        out.square().sum().backward()
        outs.append(out.detach())
        grads.append({n: p.grad.clone() for n, p in layer.named_parameters()})
    torch.testing.assert_close(outs[1], outs[0], atol=2e-5, rtol=2e-5)
    for name, ref in grads[0].items():
        scale = max(1.0, ref.abs().max().item())
        torch.testing.assert_close(grads[1][name], ref, atol=5e-5 * scale, rtol=2e-4, msg=name)


def test_output_is_phi_w_v_without_normalisation():
    """sigma(A) V = (Phi(A) W^T) V, computed without the N x N map, equals the materialised form."""
    layer = _layer().eval()
    x = torch.randn(1, 17, 32)
    with use_kernels("torch"):
        out = layer(x)
    q, k, v = layer.qkv(x).reshape(1, 17, 3, 2, 16).permute(2, 0, 3, 1, 4)
    from attnzoo.kernels import fourier_karat_reference

    coef, w = layer.operator.tensors(17)
    sigma = fourier_karat_reference(q, k, coef, 16**-0.5) @ w.transpose(-1, -2)  # [1, H, N, N]
    want = layer.proj((sigma @ v).transpose(1, 2).reshape(1, 17, 32))
    torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(sigma.sum(-1), torch.ones(()))  # no row normalisation


def test_attn_drop_materialises_sigma_and_matches_in_eval():
    layer = _layer(attn_drop=0.5)
    x = torch.randn(2, 17, 32)
    layer.eval()
    ref = layer(x)
    layer.train()
    torch.manual_seed(1)
    dropped = layer(x)
    assert dropped.shape == ref.shape and not torch.allclose(dropped, ref)
    layer.attn_drop.p = 0.0
    torch.testing.assert_close(layer(x), ref, atol=1e-6, rtol=1e-6)


def test_resample_tokens_keeps_prefix_and_mass():
    gen = torch.Generator().manual_seed(0)
    t = torch.randn(3, 1 + 4 * 4, 5, generator=gen)
    assert resample_tokens(t, (4, 4), (4, 4), 1) is t
    out = resample_tokens(t, (4, 4), (3, 7), 1)
    assert out.shape == (3, 1 + 21, 5)
    torch.testing.assert_close(out[:, 0], t[:, 0])
    const = torch.ones(1, 1 + 16, 2)
    out = resample_tokens(const, (4, 4), (8, 8), 1)
    torch.testing.assert_close(out[:, 1:], torch.full((1, 64, 2), 16 / 64))  # sums over patches kept
    torch.testing.assert_close(out[:, 1:].sum(1), const[:, 1:].sum(1))


def test_token_grid_decides_the_resampling():
    """A non-square token count needs the grid (set by the model); without it, a named error."""
    layer = _layer()
    x = torch.randn(1, 1 + 2 * 3, 32)
    with pytest.raises(ValueError, match="token_grid"):
        layer(x)
    layer.operator.token_grid = (2, 3)
    a = layer(x)
    layer.operator.token_grid = (3, 2)  # same count, other grid: another resampling
    assert not torch.allclose(layer(x), a)
    layer.operator.token_grid = None
    assert layer(torch.randn(1, 1 + 3 * 3, 32)).shape == (1, 10, 32)  # square: no grid needed


def test_universal_layer_needs_an_operator_and_shares_it():
    layers = [_layer(sharing="universal") for _ in range(3)]
    assert all("karat" not in dict(m.named_modules()) for m in layers)
    with pytest.raises(RuntimeError, match="share_operator"):
        layers[0](torch.randn(1, 17, 32))
    op = FourierOperator(num_heads=2, grid=2, rank=4, num_tokens=17)
    for layer in layers:
        layer.share_operator(op)
        assert layer.operator is op
    # the layers do not own the operator: it is in none of their state dicts
    assert all(not any("fourier" in k for k in layer.state_dict()) for layer in layers)
    x = torch.randn(1, 17, 32)
    sum(layer(x).sum() for layer in layers).backward()
    assert op.fourier.grad is not None and op.fourier.grad.abs().sum() > 0


def test_share_operator_checks_heads():
    layer = _layer()
    with pytest.raises(ValueError, match="heads"):
        layer.share_operator(FourierOperator(num_heads=3, grid=2, rank=4, num_tokens=17))

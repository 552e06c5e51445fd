"""BiLevelRoutingAttention / GlobalAttentionLePE against dense, explicitly masked re-derivations; the
routed layer's two padding modes ("mask", "zeros": the official auto_pad)."""

import math

import pytest
import torch
import torch.nn.functional as F

from attnzoo.kernels import use_kernels
from attnzoo.kernels.bilevel_routing import region_grid
from attnzoo.layers import BiLevelRoutingAttention, GlobalAttentionLePE
from tests.helpers.kernel_check import DEVICE


def dense_bra(layer: BiLevelRoutingAttention, x: torch.Tensor) -> torch.Tensor:
    """The documented semantics, written densely: regions of ceil(side / n_win) tokens, region means
    over real tokens only, top-k by affinity, softmax over the real tokens of the routed regions."""
    b, h, w, c = x.shape
    rh, rw, _, nrw = region_grid(h, w, layer.n_win)
    q, k, v = layer.qkv(x)
    region = ((torch.arange(h)[:, None] // rh) * nrw + torch.arange(w)[None, :] // rw).flatten()
    nr = int(region.max()) + 1
    onehot = F.one_hot(region, nr).to(x.dtype)  # [N, R]
    mean = onehot / onehot.sum(0)
    q_r = mean.T @ q.reshape(b, h * w, -1)
    k_r = mean.T @ k.reshape(b, h * w, -1)
    idx = torch.topk((q_r * layer.scale) @ k_r.transpose(1, 2), min(layer.topk, nr), dim=-1).indices
    routed = torch.zeros(b, nr, nr, dtype=torch.bool).scatter_(2, idx, True)
    allowed = routed[:, region][:, :, region]  # [B, N, N]
    m = layer.num_heads
    qh, kh, vh = (t.reshape(b, h * w, m, -1).transpose(1, 2) for t in (q, k, v))
    logits = ((qh * layer.scale) @ kh.transpose(-1, -2)).masked_fill(~allowed[:, None], float("-inf"))
    out = (logits.softmax(-1) @ vh).transpose(1, 2).reshape(b, h, w, c)
    out = out + layer.lepe(v.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    return layer.wo(out)


@pytest.mark.parametrize("size", [(14, 14), (9, 13), (4, 3), (17, 8)])
def test_bra_layer_matches_dense_masked_form(size):
    torch.manual_seed(0)
    layer = BiLevelRoutingAttention(32, num_heads=2, n_win=7 if size[0] >= 7 else 3, topk=3).double()
    x = torch.randn(2, *size, 32, dtype=torch.float64)
    with use_kernels("torch"):
        got = layer(x)
    torch.testing.assert_close(got, dense_bra(layer, x), atol=1e-12, rtol=1e-12)


def _bra(pad_mode: str) -> BiLevelRoutingAttention:
    torch.manual_seed(0)
    return BiLevelRoutingAttention(32, num_heads=2, n_win=3, topk=2, pad_mode=pad_mode).double()


def test_zero_padding_is_the_official_auto_pad():
    """'zeros' = the map zero-padded to a multiple of n_win before qkv, attended like any divisible map
    (official auto_pad), cropped; 'mask' differs there and agrees on divisible sizes."""
    zeros, mask = _bra("zeros"), _bra("mask")
    x = torch.randn(2, 7, 11, 32, dtype=torch.float64)
    padded = torch.nn.functional.pad(x, (0, 0, 0, 1, 0, 2))  # 9 x 12: whole 3 x 3 grid of regions
    with use_kernels("torch"):
        got = zeros(x)
        torch.testing.assert_close(got, mask(padded)[:, :7, :11], atol=1e-12, rtol=1e-12)
        assert (got - mask(x)).abs().max() > 1e-3  # the padded tokens do take part
        torch.testing.assert_close(zeros(padded), mask(padded), atol=0, rtol=0)
    with pytest.raises(ValueError, match="pad_mode must be one of"):
        BiLevelRoutingAttention(32, num_heads=2, pad_mode="reflect")


@pytest.mark.parametrize("pad_mode", ["mask", "zeros"])
def test_bra_layer_triton_path_forward_and_grads(pad_mode):
    """Both padding modes on a size n_win does not divide (8 x 10, n_win 3): Triton kernels
    (interpreter on CPU) vs reference, outputs and gradients."""
    torch.manual_seed(0)
    layer = BiLevelRoutingAttention(32, num_heads=2, n_win=3, topk=2, pad_mode=pad_mode).to(DEVICE)
    x = torch.randn(1, 8, 10, 32).to(DEVICE)

    def run(backend):
        layer.zero_grad()
        xi = x.clone().requires_grad_()
        with use_kernels(backend):
            out = layer(xi)
        out.square().sum().backward()
        return out.detach(), xi.grad, {n: p.grad.clone() for n, p in layer.named_parameters()}

    out_r, gx_r, gp_r = run("torch")
    out_t, gx_t, gp_t = run("triton")
    torch.testing.assert_close(out_t, out_r, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gx_t, gx_r, atol=1e-4, rtol=1e-4)
    for n in gp_r:
        torch.testing.assert_close(gp_t[n], gp_r[n], atol=1e-4, rtol=1e-4, msg=lambda m, n=n: f"{n}: {m}")


def test_global_attention_lepe_matches_explicit_softmax():
    torch.manual_seed(0)
    layer = GlobalAttentionLePE(64, num_heads=8).double()
    x = torch.randn(2, 3, 5, 64, dtype=torch.float64)
    qkv = layer.qkv(x).reshape(2, 15, 3, 8, 8).permute(2, 0, 3, 1, 4)
    attn = ((qkv[0] @ qkv[1].transpose(-1, -2)) * 8**-0.5).softmax(-1)
    want = (attn @ qkv[2]).transpose(1, 2).reshape(2, 3, 5, 64)
    want = layer.proj(want + layer.lepe(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))
    torch.testing.assert_close(layer(x), want, atol=1e-12, rtol=1e-12)


def test_state_dict_keys_are_official():
    assert set(BiLevelRoutingAttention(64, num_heads=2).state_dict()) == {
        "lepe.weight", "lepe.bias", "qkv.qkv.weight", "qkv.qkv.bias", "wo.weight", "wo.bias",
    }  # fmt: skip
    assert set(GlobalAttentionLePE(64).state_dict()) == {
        "qkv.weight", "proj.weight", "proj.bias", "lepe.weight", "lepe.bias",
    }  # fmt: skip
    assert math.isclose(BiLevelRoutingAttention(64, num_heads=2).scale, 64**-0.5)

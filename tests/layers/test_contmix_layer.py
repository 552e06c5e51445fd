"""ContMix layer: the official unfolded math (weights from the 49 affinities, NATTEN-style window
aggregation) in float64, the small-map resize, and the Triton path wired with gradients."""

import pytest
import torch
import torch.nn.functional as F

from attnzoo.kernels import use_kernels
from attnzoo.kernels.contmix.reference import window_starts
from attnzoo.layers import ContMix
from tests.helpers.kernel_check import DEVICE


def _layer(dim=32, ctx_dim=8, kernel_size=7, groups=4, dtype=torch.float64) -> ContMix:
    torch.manual_seed(0)
    layer = ContMix(dim, ctx_dim, kernel_size, smk_size=5, groups=groups).to(dtype).eval()
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(0.3 * torch.randn_like(p))
        for m in layer.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return layer


def _official(layer: ContMix, values, query_source, context):
    """The official computation written out: ``[B, G, H, W, 49]`` affinities, the 1x1 projection,
    per-pixel relative bias and softmax, then each window summed position by position."""
    b, c, h, w = values.shape
    g = layer.groups
    q = (layer.weight_query(query_source) * layer.scale).reshape(b, g, -1, h * w)
    keys = layer.weight_key(context).reshape(b, g, q.shape[2], -1)
    affinity = torch.einsum("bgcn,bgcl->bgnl", q, keys)
    logits = (
        torch.einsum("bgnl,ol->bgno", affinity, layer.weight_proj.weight.flatten(1)) + layer.weight_proj.bias
    )
    out = torch.zeros(b, c, h, w, dtype=values.dtype)
    halves = values.reshape(b, 2, g, -1, h, w)
    offset = 0
    for m, (k, rpb) in enumerate(((layer.smk_size, layer.rpb1), (layer.kernel_size, layer.rpb2))):
        attn = logits[..., offset : offset + k * k].reshape(b, g, h, w, k, k)
        offset += k * k
        sh, sw = window_starts(h, k), window_starts(w, k)
        for i in range(h):
            for j in range(w):
                bias = rpb[
                    :, sh[i] - i + k - 1 : sh[i] - i + 2 * k - 1, sw[j] - j + k - 1 : sw[j] - j + 2 * k - 1
                ]
                weights = torch.softmax((attn[:, :, i, j] + bias).flatten(2), -1)
                window = halves[:, m, :, :, sh[i] : sh[i] + k, sw[j] : sw[j] + k].flatten(3)
                cg = halves.shape[3]
                out[:, m * g * cg : (m + 1) * g * cg, i, j] = torch.einsum(
                    "bgn,bgcn->bgc", weights, window
                ).flatten(1)
    return out


@pytest.mark.parametrize("size", [(7, 7), (9, 12), (11, 8)])
def test_equals_the_official_math_in_float64(size):
    layer = _layer()
    h, w = size
    gen = torch.Generator().manual_seed(1)
    values, query_source = (torch.randn(2, 32, h, w, generator=gen, dtype=torch.float64) for _ in range(2))
    context = torch.randn(2, 8, h, w, generator=gen, dtype=torch.float64)
    with torch.no_grad(), use_kernels("torch"):
        got = layer.mix(values, query_source, context)
        want = _official(layer, values, query_source, context)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_small_maps_are_resized_up_and_pooled_back():
    """Below the large kernel the official rule applies: short side to K, long side scaled (floored),
    bilinear, then an adaptive average pool back to the input size."""
    layer = _layer(kernel_size=7)
    gen = torch.Generator().manual_seed(2)
    values, query_source = (torch.randn(1, 32, 3, 5, generator=gen, dtype=torch.float64) for _ in range(2))
    context = torch.randn(1, 8, 3, 5, generator=gen, dtype=torch.float64)
    with torch.no_grad(), use_kernels("torch"):
        got = layer.mix(values, query_source, context)
        big = [
            F.interpolate(t, size=(7, 11), mode="bilinear", align_corners=False)
            for t in (values, query_source, context)
        ]
        want = F.adaptive_avg_pool2d(_official(layer, *big), (3, 5))
    assert got.shape == (1, 32, 3, 5)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_triton_path_matches_the_reference_with_gradients():
    layer = _layer(dtype=torch.float32).to(DEVICE)
    gen = torch.Generator().manual_seed(3)
    inputs = [torch.randn(2, c, 9, 10, generator=gen).to(DEVICE).requires_grad_() for c in (32, 32, 8)]

    def run(backend):
        layer.zero_grad()
        for t in inputs:
            t.grad = None
        with use_kernels(backend):
            out = layer.mix(*inputs)
        out.square().sum().backward()
        grads = [t.grad.clone() for t in inputs] + [p.grad.clone() for p in (layer.rpb1, layer.rpb2)]
        return out.detach(), grads + [
            layer.weight_proj.weight.grad.clone(),
            layer.weight_proj.bias.grad.clone(),
        ]

    want_out, want_grads = run("torch")
    got_out, got_grads = run("triton")
    torch.testing.assert_close(got_out, want_out, rtol=1e-4, atol=1e-5)
    for got, want in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-4)

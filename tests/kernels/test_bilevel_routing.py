"""Bi-level routing attention beyond the kernel battery: large regions, routing, masking, dispatch."""

import math

import pytest
import torch

from attnzoo.kernels import use_kernels
from attnzoo.kernels.bilevel_routing import (
    bilevel_routing,
    bilevel_routing_attention,
    bilevel_routing_attention_reference,
    region_grid,
)
from attnzoo.kernels.bilevel_routing.spec import SPEC, make_problem
from tests.helpers.kernel_check import DEVICE, check_spec


def test_kernel_large_regions_and_blocks():
    """Regions larger than one tile (T > 64) and k * T spanning several key blocks."""
    gen = torch.Generator().manual_seed(7)
    b, m, h, w, d = 1, 1, 19, 18, 16
    rh, rw, _, _ = region_grid(h, w, 2)  # 10 x 9 regions, T = 90
    q, k, v = (torch.randn(b, m, h, w, d, generator=gen) for _ in range(3))
    idx = bilevel_routing(q[:, 0], k[:, 0], (rh, rw), 2, d**-0.5)
    check_spec(SPEC, [q, k, v, idx], ((rh, rw), d**-0.5), torch.float32)


def test_reference_equals_dense_masked_attention():
    """The gathered formulation equals dense attention with a region-routing mask (padding masked)."""
    tensors, ((rh, rw), scale) = make_problem(3)
    q, k, v, idx = tensors
    b, m, h, w, _ = q.shape
    nrw = math.ceil(w / rw)
    region = (torch.arange(h)[:, None] // rh) * nrw + torch.arange(w)[None, :] // rw  # [H, W]
    region = region.flatten()
    routed = torch.zeros(b, region.max() + 1, region.max() + 1, dtype=torch.bool)
    routed.scatter_(2, idx, True)
    allowed = routed[:, region][:, :, region]  # [B, N, N]
    logits = (q.flatten(2, 3) * scale) @ k.flatten(2, 3).transpose(-1, -2)
    logits = logits.masked_fill(~allowed[:, None], float("-inf"))
    want = (logits.softmax(-1) @ v.flatten(2, 3)).reshape(b, m, h, w, -1)
    got = bilevel_routing_attention_reference(q, k, v, idx, (rh, rw), scale)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_routing_is_topk_of_region_means():
    gen = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 8, 12, 6, generator=gen), torch.randn(2, 8, 12, 6, generator=gen)
    idx = bilevel_routing(q, k, (4, 4), 3, 0.5)
    assert idx.shape == (2, 6, 3)
    qr = q.reshape(2, 2, 4, 3, 4, 6).mean((2, 4)).reshape(2, 6, 6)
    kr = k.reshape(2, 2, 4, 3, 4, 6).mean((2, 4)).reshape(2, 6, 6)
    want = torch.topk(qr @ kr.transpose(1, 2), 3, dim=-1).indices
    assert torch.equal(idx, want)
    # padded sizes: padding does not dilute the means; k is capped at the region count
    idx = bilevel_routing(q[:, :7, :5], k[:, :7, :5], (4, 4), 9, 0.5)
    assert idx.shape == (2, 4, 4)


def test_region_grid():
    assert region_grid(56, 56, 7) == (8, 8, 7, 7)
    assert region_grid(16, 16, 7) == (3, 3, 6, 6)  # the 7th region row would be padding only
    assert region_grid(4, 5, 7) == (1, 1, 4, 5)
    assert region_grid(200, 334, 7) == (29, 48, 7, 7)


def test_padding_is_never_attended():
    """Keys in the padded part of a region get no weight: output ignores anything beyond H x W."""
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, 10, 10, 8, generator=gen) for _ in range(3))
    rh, rw, _, _ = region_grid(9, 9, 4)  # 3 x 3 regions on a 9 x 9 map: divisible
    idx = torch.arange(9).repeat(9, 1)[None]  # every region sees every region
    full = bilevel_routing_attention_reference(
        q[:, :, :9, :9], k[:, :, :9, :9], v[:, :, :9, :9], idx, (3, 3), 0.3
    )
    dense = torch.softmax((q[:, :, :9, :9].flatten(2, 3) * 0.3) @ k[:, :, :9, :9].flatten(2, 3).mT, -1)
    torch.testing.assert_close(
        full.flatten(2, 3), dense @ v[:, :, :9, :9].flatten(2, 3), atol=1e-5, rtol=1e-5
    )
    rh, rw, nrh, nrw = region_grid(8, 7, 3)  # 3 x 3 regions, last row / column short
    idx = torch.arange(nrh * nrw).repeat(nrh * nrw, 1)[None]
    got = bilevel_routing_attention_reference(
        q[:, :, :8, :7], k[:, :, :8, :7], v[:, :, :8, :7], idx, (rh, rw), 0.3
    )
    dense = torch.softmax((q[:, :, :8, :7].flatten(2, 3) * 0.3) @ k[:, :, :8, :7].flatten(2, 3).mT, -1)
    torch.testing.assert_close(got.flatten(2, 3), dense @ v[:, :, :8, :7].flatten(2, 3), atol=1e-5, rtol=1e-5)
    crop = [t[:, :, :8, :7].to(DEVICE) for t in (q, k, v)]
    with use_kernels("triton"):
        kern = bilevel_routing_attention(*crop, idx.to(DEVICE), (rh, rw), 0.3)
    torch.testing.assert_close(kern.cpu(), got, atol=2e-5, rtol=2e-5)


def test_dispatch_uses_kernel_only_when_asked():
    tensors, meta = make_problem(0)
    tensors = [t.to(DEVICE) for t in tensors]
    with use_kernels("torch"):
        ref = bilevel_routing_attention(*tensors, *meta)
    with use_kernels("triton"):
        out = bilevel_routing_attention(*tensors, *meta)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=2e-5)


def test_bad_shapes_are_named():
    (q, k, v, idx), meta = make_problem(1)
    with pytest.raises(ValueError, match="q and k shapes differ"):
        bilevel_routing_attention_reference(q, k[..., :-1], v, idx, *meta)
    with pytest.raises(ValueError, match="routing index"):
        bilevel_routing_attention_reference(q, k, v, idx[:, :-1], *meta)
    with pytest.raises(ValueError, match="heads, H, W, D"):
        bilevel_routing_attention_reference(q[0], k[0], v[0], idx, *meta)

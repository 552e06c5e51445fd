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
from attnzoo.kernels.bilevel_routing.reference import routed_attention
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


def _region_means(x: torch.Tensor, rh: int, rw: int) -> torch.Tensor:
    """``[B, R, C]``: the mean of each region's real tokens, region by region (row-major)."""
    _, h, w, _ = x.shape
    return torch.stack(
        [x[:, y : y + rh, z : z + rw].mean((1, 2)) for y in range(0, h, rh) for z in range(0, w, rw)], 1
    )


@pytest.mark.parametrize("topk", [2, 3, 9])
def test_routing_of_a_padded_map(topk):
    """A 7 x 5 map in 4 x 4 regions (16, 4, 12 and 3 real tokens): the routed regions are the top-k
    of the affinities of the real-token means (padding does not dilute them), best first, and k is
    capped at the region count."""
    gen = torch.Generator().manual_seed(0)
    q, k = torch.randn(3, 7, 5, 6, generator=gen), torch.randn(3, 7, 5, 6, generator=gen)
    idx = bilevel_routing(q, k, (4, 4), topk, 0.5)
    affinity = (_region_means(q, 4, 4) * 0.5) @ _region_means(k, 4, 4).transpose(1, 2)  # [B, 4, 4]
    assert idx.shape == (3, 4, min(topk, 4))
    best = affinity.topk(min(topk, 4), dim=-1).values
    torch.testing.assert_close(affinity.gather(-1, idx), best, rtol=1e-6, atol=1e-6)


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


def test_kernel_masks_out_of_range_index_when_unchecked():
    """Called as the raw op (no checks, as under a compiled graph), an out-of-range routing index is
    a region not routed to: forward and gradients equal the reference without it, nothing outside
    k / v is read."""
    gen = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(1, 2, 6, 5, 8, generator=gen) for _ in range(3))
    good = torch.stack([torch.randperm(4, generator=gen)[:2] for _ in range(4)])[None]  # 2x2 regions
    bad = torch.cat([good, torch.tensor([-1, 4, 10**6, -(10**6)]).reshape(1, 4, 1)], dim=-1)
    leaves = [t.to(DEVICE).requires_grad_() for t in (q, k, v)]
    out, _ = torch.ops.attnzoo.bilevel_routing_attention(*leaves, bad.to(DEVICE, torch.int32), 3, 3, 0.3)
    grad = torch.randn(out.shape, generator=gen)
    out.backward(grad.to(DEVICE))
    ref_leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    want = bilevel_routing_attention_reference(*ref_leaves, good, (3, 3), 0.3)
    want.backward(grad)
    torch.testing.assert_close(out.detach().cpu(), want.detach(), atol=2e-5, rtol=2e-5)
    for got, ref in zip(leaves, ref_leaves, strict=True):
        torch.testing.assert_close(got.grad.cpu(), ref.grad, atol=1e-4, rtol=1e-4)


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


def _all_heads(x: torch.Tensor) -> torch.Tensor:
    """``[B, M, H, W, D]`` -> ``[B, H, W, M * D]``, what routing reads."""
    return x.permute(0, 2, 3, 1, 4).flatten(3)


@pytest.mark.parametrize(
    ("h", "w", "region", "topk"),
    [
        (5, 6, (1, 1), 7),  # T = 1: 16 regions per tile, two groups, the last one partial
        (9, 8, (1, 1), 20),  # 72 regions: the list builder walks them in two chunks
        (12, 12, (2, 2), 12),  # T = 4: merged lists of up to 36 regions span several tiles
        (7, 6, (2, 2), 5),  # T = 4, the last region row cut by the map border (2 real tokens)
        (6, 7, (2, 3), 4),  # T = 6 in 8 token slots, regions of 6, 3, 4 and 2 real tokens
        (8, 8, (4, 4), 3),  # T = 16: one region per tile, no packing
        (9, 6, (3, 3), 2),  # T = 9: one padded region per tile, no packing
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_kernel_packs_short_regions(h, w, region, topk, dtype):
    """Query (forward, dQ) and key (dK / dV) tiles holding several whole regions, on padded maps."""
    gen = torch.Generator().manual_seed(h * w + topk)
    q, k, v = (torch.randn(2, 2, h, w, 8, generator=gen) for _ in range(3))
    idx = bilevel_routing(_all_heads(q), _all_heads(k), region, topk, 0.5)
    check_spec(SPEC, [q, k, v, idx], (region, 0.5), dtype)


@pytest.mark.parametrize("region", [(1, 1), (2, 2), (4, 4)])
def test_kernel_counts_repeated_regions(region):
    """A region routed twice (possible only unchecked, e.g. ``topk`` above the region count) weighs
    its keys twice, as the gathered reference does, in packed and unpacked tiles."""
    gen = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(1, 2, 7, 5, 8, generator=gen) for _ in range(3))
    rh, rw = region
    grid = (rh, rw, math.ceil(7 / rh), math.ceil(5 / rw))
    nr = grid[2] * grid[3]
    idx = torch.randint(nr, (1, nr, nr + 3), generator=gen)  # more entries than regions: repeats
    leaves = [t.to(DEVICE).requires_grad_() for t in (q, k, v)]
    out, _ = torch.ops.attnzoo.bilevel_routing_attention(*leaves, idx.to(DEVICE, torch.int32), rh, rw, 0.4)
    grad = torch.randn(out.shape, generator=gen)
    out.backward(grad.to(DEVICE))
    ref_leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    want = routed_attention(*ref_leaves, idx, grid, 0.4)
    want.backward(grad)
    torch.testing.assert_close(out.detach().cpu(), want.detach(), atol=2e-5, rtol=2e-5)
    for got, ref in zip(leaves, ref_leaves, strict=True):
        torch.testing.assert_close(got.grad.cpu(), ref.grad, atol=1e-4, rtol=1e-4)

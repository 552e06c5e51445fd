"""Top-k attention beyond the kernel battery (which checks out-of-range indices): the kernel's masking
of unchecked indices, shape errors, dense equivalence at K = N, dispatch of float64, empty batches,
repeated indices and long key lists."""

import pytest
import torch
import torch.nn.functional as F

from attnzoo.kernels import topk_attention, use_kernels
from attnzoo.kernels.topk_attention import topk_attention_reference
from attnzoo.kernels.topk_attention.spec import SPEC, make_problem
from tests.helpers.kernel_check import DEVICE, check_spec

BACKENDS = ("torch", "triton")


def _on_device(tensors):
    return [t.to(DEVICE) for t in tensors]


def test_kernel_masks_out_of_range_index_when_unchecked():
    """Called as the raw op (no checks, as under a compiled graph), an out-of-range index is a missing
    key: the kernel never reads outside k / v."""
    gen = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(1, 2, 6, 8, generator=gen) for _ in range(3))
    idx = torch.stack([torch.randperm(6, generator=gen)[:4] for _ in range(12)]).reshape(1, 2, 6, 4)
    bad = idx.clone()
    bad[..., -1] = torch.tensor([6, -3, 10**6, -(10**6), 7, 6]).repeat(2, 1)
    out, _ = torch.ops.attnzoo.topk_attention(*_on_device([q, k, v, bad.to(torch.int32)]), 0.3)
    want = topk_attention_reference(q, k, v, idx[..., :-1], 0.3)
    torch.testing.assert_close(out.cpu(), want, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_shapes_are_named(backend):
    (q, k, v, idx), (scale,) = make_problem(1)
    q, k, v, idx = _on_device([q, k, v, idx])
    cases = [
        ((q[0], k, v, idx), "ranks"),
        ((q, k[..., :-1], v, idx), "does not match q"),
        ((q, k, v[:, :, :-1], idx), "does not match k"),
        ((q, k, v, idx[:, :, :-1]), "key index must have shape"),
        ((q, k, v, idx[..., :0]), "key index must have shape"),
        ((q, k, v, idx.float()), "int32 or int64"),
        ((q, k.double(), v, idx), "one floating dtype"),
    ]
    for args, message in cases:
        with use_kernels(backend), pytest.raises(ValueError, match=message):
            topk_attention(*args, scale)
        with pytest.raises(ValueError, match=message):
            topk_attention_reference(*args, scale)


def _all_keys(b, h, m, n, gen):
    """Every key once per row, in a random order per row."""
    return torch.stack([torch.randperm(n, generator=gen) for _ in range(b * h * m)]).reshape(b, h, m, n)


def test_all_keys_equal_dense_attention():
    """K = N is dense softmax attention: the reference in float64, the kernel in fp32."""
    gen = torch.Generator().manual_seed(5)
    b, h, n, d, dv = 2, 3, 11, 12, 20
    q = torch.randn(b, h, n - 1, d, generator=gen, dtype=torch.float64)
    k = torch.randn(b, h, n, d, generator=gen, dtype=torch.float64)
    v = torch.randn(b, h, n, dv, generator=gen, dtype=torch.float64)
    idx = _all_keys(b, h, n - 1, n, gen)
    want = F.scaled_dot_product_attention(q, k, v, scale=0.4)
    torch.testing.assert_close(topk_attention_reference(q, k, v, idx, 0.4), want, atol=1e-12, rtol=1e-12)
    q32, k32, v32, idx = _on_device([q.float(), k.float(), v.float(), idx])
    with use_kernels("triton"):
        got = topk_attention(q32, k32, v32, idx, 0.4)
    torch.testing.assert_close(got.cpu().double(), want, atol=2e-5, rtol=2e-5)


def test_float64_runs_the_reference():
    (q, k, v, idx), (scale,) = make_problem(2)
    q, k, v, idx = _on_device([t.double() if t.is_floating_point() else t for t in (q, k, v, idx)])
    calls = []

    class Spy(torch.utils._python_dispatch.TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            calls.append(func)
            return func(*args, **(kwargs or {}))

    with use_kernels("auto"), Spy():
        out = topk_attention(q, k, v, idx, scale)
    assert out.dtype == torch.float64
    assert not any("attnzoo" in str(f) for f in calls)
    assert torch.equal(out, topk_attention_reference(q, k, v, idx, scale))
    with use_kernels("triton"), pytest.raises(RuntimeError, match="does not support"):
        topk_attention(q, k, v, idx, scale)


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_batch(backend):
    q = torch.randn(0, 2, 5, 8, device=DEVICE, requires_grad=True)
    k = torch.randn(0, 2, 6, 8, device=DEVICE, requires_grad=True)
    v = torch.randn(0, 2, 6, 12, device=DEVICE, requires_grad=True)
    idx = torch.zeros(0, 2, 5, 3, dtype=torch.int64, device=DEVICE)
    with use_kernels(backend):
        out = topk_attention(q, k, v, idx, 0.5)
    assert out.shape == (0, 2, 5, 12) and out.dtype == q.dtype
    out.sum().backward()
    assert q.grad.shape == q.shape and k.grad.shape == k.shape and v.grad.shape == v.shape


def test_index_dtypes_agree():
    (q, k, v, idx), (scale,) = make_problem(4)
    q, k, v, idx = _on_device([q, k, v, idx])
    for backend in BACKENDS:
        with use_kernels(backend):
            a = topk_attention(q, k, v, idx, scale)
            b = topk_attention(q, k, v, idx.to(torch.int32), scale)
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_repeated_index_counts_twice():
    """Gather semantics, forward and gradients (the dK / dV of a key selected twice sums both)."""
    gen = torch.Generator().manual_seed(6)
    q, k, v = torch.randn(1, 2, 5, 8, generator=gen), torch.randn(1, 2, 7, 8, generator=gen), None
    v = torch.randn(1, 2, 7, 12, generator=gen)
    idx = torch.randint(0, 3, (1, 2, 5, 6), generator=gen)  # many repeats
    check_spec(SPEC, [q, k, v, idx], (0.35,), torch.float32)
    manual = torch.cat([idx, idx[..., :1]], dim=-1)  # key idx[..., 0] once more
    ref = topk_attention_reference(q, k, v, manual, 0.35)
    logits = torch.einsum("bhmd,bhnd->bhmn", q, k) * 0.35
    weight = torch.zeros_like(logits).scatter_add_(-1, manual, torch.ones_like(manual, dtype=q.dtype))
    dense = (logits.exp() * weight) / (logits.exp() * weight).sum(-1, keepdim=True) @ v
    torch.testing.assert_close(ref, dense, atol=1e-5, rtol=1e-5)


def test_long_key_lists_and_popular_keys():
    """K > 64 (several online-softmax steps) and keys selected by more rows than one dK / dV step."""
    gen = torch.Generator().manual_seed(8)
    b, h, n, topk, d = 1, 1, 100, 70, 8
    q, k, v = (torch.randn(b, h, s, d, generator=gen) for s in (n - 1, n, n))
    idx = torch.topk(torch.randn(b, h, n - 1, n, generator=gen), topk, dim=-1).indices
    idx[..., 0] = 0  # key 0 (the cls token) selected by every row
    check_spec(SPEC, [q, k, v, idx], (d**-0.5,), torch.float32)


@pytest.mark.parametrize("chunk_entries", [1, 30, 10**6])
def test_index_inversion_in_chunks(chunk_entries):
    """The backward's inverted index (each key's selecting rows, in row order) is the same however many
    groups are sorted at once; targets out of range belong to no key."""
    from attnzoo.kernels.common.host import invert_index

    gen = torch.Generator().manual_seed(0)
    groups, rows, per_row, n = 5, 7, 3, 6
    flat = torch.randint(-1, n + 1, (groups, rows * per_row), generator=gen)
    src, off = invert_index(flat, per_row, n, chunk_entries=chunk_entries)
    assert src.dtype == off.dtype == torch.int32 and off.shape == (groups, n + 1)
    for g in range(groups):
        for j in range(n):
            want = [e // per_row for e in range(rows * per_row) if flat[g, e] == j]
            assert src[g, off[g, j] : off[g, j + 1]].tolist() == want

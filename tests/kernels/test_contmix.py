"""ContMix beyond the kernel battery: named shape errors, maps smaller than the window, every odd
window size at border-heavy maps, the GPU tile shapes (several window steps, row blocks mixing border
and interior rows), each parameter's gradient alone, float64 dispatch, empty batches, determinism."""

import pytest
import torch

from attnzoo.kernels import contmix, use_kernels
from attnzoo.kernels.contmix import contmix_reference
from attnzoo.kernels.contmix import op as contmix_op
from attnzoo.kernels.contmix.op import diagonal_sums
from attnzoo.kernels.contmix.reference import window_starts
from attnzoo.kernels.contmix.spec import SPEC, make_problem, problem
from tests.helpers.kernel_check import DEVICE, check_against_reference, check_spec

BACKENDS = ("torch", "triton")
NAMES = ("q", "proj", "proj_bias", "rpb", "v")


def _problem(b, g, h, w, c, cv, k, seed=0):
    return problem(b, g, h, w, c, cv, k, torch.Generator().manual_seed(seed))[0]


def _on_device(tensors):
    return [t.to(DEVICE) for t in tensors]


def test_spec_checks_every_input():
    """The battery compares the gradients of all five inputs, not only q and v."""
    assert SPEC.differentiable == (True,) * 5
    assert len(make_problem(0)[0]) == 5


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_shapes_are_named(backend):
    q, proj, pb, rpb, v = _on_device(_problem(1, 2, 6, 7, 8, 4, 3))
    cases = [
        ((q[0], proj, pb, rpb, v), "ranks"),
        ((q, proj, pb, rpb, v[0]), "ranks"),
        ((q, proj, pb, rpb[0], v), r"rpb must be \[G, 2K - 1, 2K - 1\]"),
        ((q, proj, pb, rpb[:, :4, :4], v), r"rpb must be \[G, 2K - 1, 2K - 1\]"),
        ((q, proj, pb, rpb[:, :, :3], v), r"rpb must be \[G, 2K - 1, 2K - 1\]"),
        ((q, proj, pb, rpb, v[:, :, :-1]), "does not match q"),
        ((q, proj[..., :-1], pb, rpb, v), r"proj must be \[B, G, C, K \* K\]"),
        ((q, proj[:, :, :-1], pb, rpb, v), r"proj must be \[B, G, C, K \* K\]"),
        ((q, proj, pb[:-1], rpb, v), r"proj_bias must be \[K \* K\]"),
        ((q, proj[:, :1], pb, rpb, v), r"proj must be"),
        ((q[:, :1], proj[:, :1], pb, rpb, v[:, :1]), "rpb has 2 groups, q has 1"),
        ((q, proj, pb, rpb.double(), v), "one floating dtype"),
        ((q.int(), proj, pb, rpb, v), "one floating dtype"),
        ((q, proj, pb, rpb, v.to("meta")), "one device"),
    ]
    for args, message in cases:
        with use_kernels(backend), pytest.raises(ValueError, match=message):
            contmix(*args)
        with pytest.raises(ValueError, match=message):
            contmix_reference(*args)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("h", "w"), [(4, 5), (5, 4), (2, 2)])
def test_map_smaller_than_window_raises(backend, h, w):
    tensors = _on_device(_problem(1, 1, h, w, 8, 8, 5))
    with use_kernels(backend), pytest.raises(ValueError, match="at least as large as its 5x5 window"):
        contmix(*tensors)


def test_window_starts_follow_natten():
    """Centred, shifted inward at both borders, always inside the map."""
    assert window_starts(7, 3).tolist() == [0, 0, 1, 2, 3, 4, 4]
    assert window_starts(5, 5).tolist() == [0] * 5
    assert window_starts(9, 5).tolist() == [0, 0, 0, 1, 2, 3, 4, 4, 4]


@pytest.mark.parametrize("k", range(1, 18, 2))
def test_every_odd_window_at_border_heavy_maps(k):
    """Forward and all five gradients where borders dominate: ``H = K`` (every row's window is the
    whole height), ``W = K + 1``, in fp32."""
    check_spec(SPEC, _problem(1, 1, k, k + 1, 8 if k > 9 else 12, 8, k, seed=k), (), torch.float32)


@pytest.mark.parametrize(
    "budget",
    [contmix_op.GPU_TILES, {"window": 32, "elements": 32768}],
    ids=["gpu", "mid"],
)
@pytest.mark.parametrize(
    "shape",
    [(1, 1, 8, 9, 16, 8, 7), (1, 1, 5, 18, 14, 12, 5)],
    ids=lambda s: "x".join(map(str, s)),
)
def test_small_tiles(monkeypatch, budget, shape):
    """The kernels under the tiles a GPU gets (the interpreter's budget takes whole windows and maps
    in one step): several window steps of the online softmax, several pixel tiles per row, row blocks
    of the parameter kernel that mix border and interior rows, several dV steps."""
    monkeypatch.setattr(contmix_op, "INTERPRETER_TILES", budget)
    check_spec(SPEC, _problem(*shape), (), torch.float32)


@pytest.mark.parametrize("name", NAMES)
def test_each_gradient_alone(name):
    """Only one input requires grad: the op still returns that gradient right (vs float64)."""
    tensors = _problem(2, 2, 7, 9, 12, 8, 5, seed=3)
    which = NAMES.index(name)
    wrt = tensors[which].double().requires_grad_()
    ref_in = [wrt if n == which else t.double() for n, t in enumerate(tensors)]
    out = contmix_reference(*ref_in)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    (want,) = torch.autograd.grad(out, wrt, grad)
    got_in = [t.to(DEVICE).requires_grad_(n == which) for n, t in enumerate(tensors)]
    with use_kernels("triton"):
        (got,) = torch.autograd.grad(contmix(*got_in), got_in[which], grad.float().to(DEVICE))
    assert got.dtype == torch.float32 and got.shape == tensors[which].shape
    torch.testing.assert_close(
        got.cpu().double(), want, atol=2e-5 * max(1.0, want.abs().max().item()), rtol=2e-5
    )


def test_float64_runs_the_reference():
    tensors = _on_device([t.double() for t in _problem(1, 2, 6, 6, 8, 8, 3)])
    calls = []

    class Spy(torch.utils._python_dispatch.TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            calls.append(func)
            return func(*args, **(kwargs or {}))

    with use_kernels("auto"), Spy():
        out = contmix(*tensors)
    assert out.dtype == torch.float64
    assert not any("attnzoo" in str(f) for f in calls)
    assert torch.equal(out, contmix_reference(*tensors))
    with use_kernels("triton"), pytest.raises(RuntimeError, match="does not support"):
        contmix(*tensors)


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_batch(backend):
    tensors = [t.to(DEVICE).requires_grad_() for t in _problem(0, 2, 5, 6, 8, 12, 3)]
    with use_kernels(backend):
        out = contmix(*tensors)
    assert out.shape == (0, 2, 5, 6, 12) and out.dtype == torch.float32
    out.sum().backward()
    for t in tensors:
        assert t.grad.shape == t.shape and not t.grad.any()


def test_backward_is_deterministic_and_takes_strided_inputs():
    """Two backward passes agree bit for bit (no atomics); q / v taken as permuted views of a
    channels-last layout (how a layer splits heads) give the contiguous inputs' results."""
    q, proj, pb, rpb, v = _problem(1, 2, 7, 8, 8, 8, 5, seed=4)
    q_view = q.permute(0, 2, 3, 1, 4).contiguous().permute(0, 3, 1, 2, 4)
    v_view = v.permute(0, 2, 3, 1, 4).contiguous().permute(0, 3, 1, 2, 4)
    assert not q_view.is_contiguous()
    grads = []
    for inputs in ((q, proj, pb, rpb, v), (q_view, proj, pb, rpb, v_view), (q, proj, pb, rpb, v)):
        leaves = [t.detach().clone().to(DEVICE).requires_grad_() for t in inputs]
        with use_kernels("triton"):
            out = contmix(*leaves)
        out.backward(torch.ones_like(out))
        grads.append([out.detach(), *(t.grad for t in leaves)])
    for a, b in zip(grads[0], grads[2], strict=True):
        assert torch.equal(a, b)
    for a, b in zip(grads[0], grads[1], strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def test_fp16_border_heavy_large_window():
    """fp16 inputs at K = 13 on its smallest map (all rows and columns are border positions)."""
    check_against_reference(
        _forced,
        contmix_reference,
        _problem(1, 1, 13, 13, 16, 8, 13, seed=13),
        torch.float16,
        seed=13,
    )


def _forced(*tensors):
    with use_kernels("triton"):
        return contmix(*tensors)


def test_diagonal_sums():
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    want = torch.zeros(2, 3, 9, dtype=torch.float64)
    for u in range(5):
        for w in range(5):
            want[..., u + w] += x[..., u, w]
    torch.testing.assert_close(diagonal_sums(x), want, atol=1e-12, rtol=0)

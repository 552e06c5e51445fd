"""MALA / InLine linear attention beyond the kernel battery: forward and all five gradients against the
float64 reference (both kinds, leading dims, one token, long ragged slices over several reduction
chunks, the GPU chunking), zq / zk defaults, the official MALA formula, fp16 sums past the fp16 range,
named input errors, dispatch of unsupported inputs, empty inputs, determinism and strided inputs."""

import pytest
import torch

from attnzoo.kernels import linear_attention, linear_attention_reference, use_kernels
from attnzoo.kernels.linear_attention import op as linear_op
from attnzoo.kernels.linear_attention.spec import SPEC, problem
from tests.helpers.kernel_check import DEVICE

KINDS = ("mala", "inline")
BACKENDS = ("torch", "triton")
NAMES = ("q", "k", "v", "zq", "zk")


def _problem(kind, lead, n, d=16, dv=12, seed=0):
    return problem(kind, lead, n, d, dv, torch.Generator().manual_seed(seed))


def _vs_float64(tensors, kind, scale=None, eps=1e-6, seed=0):
    """Max errors of the Triton op in fp32 against the float64 reference, forward and the gradient of
    every input, each relative to ``max(1, |reference|)``; asserts they are below 2e-5."""
    ref_in = [t.double().requires_grad_() for t in tensors]
    ref = linear_attention_reference(*ref_in, kind=kind, scale=scale, eps=eps)
    grad = torch.randn(ref.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    want = torch.autograd.grad(ref, ref_in, grad)
    got_in = [t.float().to(DEVICE).requires_grad_() for t in tensors]
    with use_kernels("triton"):
        out = linear_attention(*got_in, kind=kind, scale=scale, eps=eps)
    got = torch.autograd.grad(out, got_in, grad.float().to(DEVICE))
    errors = {}
    for name, a, b in zip(("out", *NAMES), (out, *got), (ref, *want), strict=True):
        assert a.dtype == torch.float32 and a.shape == b.shape, name
        errors[name] = (a.cpu().double() - b).abs().max().item() / max(1.0, b.abs().max().item())
    assert max(errors.values()) < 2e-5, errors
    return errors


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("lead", "n", "d", "dv"),
    [((2, 2, 3), 50, 16, 12), ((1,), 1, 8, 24), ((2,), 777, 32, 16), ((), 130, 64, 64)],
    ids=["batch-heads-windows", "one-token", "long-ragged", "no-lead-64"],
)
def test_matches_float64_reference(kind, lead, n, d, dv):
    """Forward and dq, dk, dv, dzq, dzk; ``long-ragged`` spans several reduction chunks (and token
    tiles) with a ragged last one."""
    if linear_op.tile_budget() is linear_op.INTERPRETER_TILES:  # on a GPU, test_gpu_chunking covers it
        assert linear_op.chunking(2, 777, 128) == (256, 4)  # 2 tiles per chunk
    _vs_float64(_problem(kind, lead, n, d, dv), kind)


@pytest.mark.parametrize("kind", KINDS)
def test_gpu_chunking(monkeypatch, kind):
    """The chunk sizes a GPU gets (512-token chunks of 64-token tiles): three chunks, the last ragged."""
    monkeypatch.setattr(linear_op, "INTERPRETER_TILES", linear_op.GPU_TILES)
    assert linear_op.chunking(1, 1100, 64) == (512, 3)
    _vs_float64(_problem(kind, (1,), 1100, 16, 8, seed=1), kind, seed=1)


@pytest.mark.parametrize("kind", KINDS)
def test_scale_and_eps_are_honoured(kind):
    """A non-default scale and (MALA) a large eps change the result, and the kernel follows them."""
    tensors = _problem(kind, (2,), 37, seed=2)
    _vs_float64(tensors, kind, scale=0.3, eps=0.5)
    default = linear_attention_reference(*tensors, kind=kind)
    assert (linear_attention_reference(*tensors, kind=kind, scale=0.3, eps=0.5) - default).abs().max() > 1e-3


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_zq_zk_default_to_q_k(kind, backend):
    """Without zq / zk the op is the op with ``zq = q``, ``zk = k``; q and k receive both gradients.
    (MALA: the positive zq, zk of a problem as q, k, so that z > 0.)"""
    _, _, v, q, k = (t.to(DEVICE) for t in _problem(kind, (2, 3), 45, seed=3))
    grad = torch.randn(2, 3, 45, 12, generator=torch.Generator().manual_seed(0)).to(DEVICE)
    results = []
    for explicit in (False, True):
        inputs = [t.clone().requires_grad_() for t in (q, k, v)]
        extra = (inputs[0], inputs[1]) if explicit else ()
        with use_kernels(backend):
            out = linear_attention(*inputs, *extra, kind=kind)
        results.append((out, *torch.autograd.grad(out, inputs, grad)))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    ref_in = [t.double().cpu().requires_grad_() for t in (q, k, v)]
    ref = linear_attention_reference(*ref_in, kind=kind)
    for a, b in zip(results[0], (ref, *torch.autograd.grad(ref, ref_in, grad.double().cpu())), strict=True):
        torch.testing.assert_close(a.cpu().double(), b, atol=2e-5 * max(1.0, b.abs().max().item()), rtol=2e-5)


def test_reference_is_the_official_mala_formula():
    """MALA's code: z from the positive q, k; RoPE-rotated q, k through ``kv = (k^T sqrt(s / N)) @
    (v sqrt(s / N))``; ``q @ kv * (1 + 1 / (z + 1e-6)) - z * mean(v)``. InLine: ``q @ kv + (1 - z) mean(v)``
    with ``kv = k^T v s / N``."""
    q, k, v, zq, zk = (t.double() for t in _problem("mala", (2, 2), 29, 16, 16, seed=4))
    n, s = q.shape[-2], 16**-0.5
    z = zq @ zk.mean(dim=-2, keepdim=True).transpose(-2, -1) * s
    kv = (k.transpose(-2, -1) * (s / n) ** 0.5) @ (v * (s / n) ** 0.5)
    official = q @ kv * (1 + 1 / (z + 1e-6)) - z * v.mean(dim=2, keepdim=True)
    ours = linear_attention_reference(q, k, v, zq, zk, kind="mala")
    torch.testing.assert_close(ours, official, atol=1e-12, rtol=0)
    z = q @ k.mean(dim=-2, keepdim=True).transpose(-2, -1) * s
    inline = q @ (k.transpose(-2, -1) @ v) * (s / n) + (1 - z) * v.mean(dim=2, keepdim=True)
    torch.testing.assert_close(linear_attention_reference(q, k, v, kind="inline"), inline, atol=1e-12, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_fp16_sums_past_the_fp16_range(kind):
    """KV = sum_j k_j v_j^T exceeds 65504 (k of ~2.5, v of ~20, 2000 tokens): the kernel keeps the
    statistics in fp32, and the output (O(20)) matches the fp32 reference on the same fp16 inputs."""
    gen = torch.Generator().manual_seed(5)
    q, k = (torch.rand(1, 2000, 16, generator=gen) + 2.0 for _ in range(2))
    v = torch.rand(1, 2000, 16, generator=gen) * 4 + 18
    half = [t.half() for t in (q, k, v)]
    assert (half[1].float().transpose(-1, -2) @ half[2].float()).min() > 65504
    with use_kernels("triton"):
        out = linear_attention(*(t.to(DEVICE) for t in half), kind=kind)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    ref = linear_attention_reference(*(t.float() for t in half), kind=kind)
    torch.testing.assert_close(out.float().cpu(), ref, atol=3e-3 * ref.abs().max().item(), rtol=3e-3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_inputs_are_named(backend):
    q, k, v, zq, zk = (t.to(DEVICE) for t in _problem("inline", (2,), 9, 8, 8))
    cases = [
        ((q, k, v), {"kind": "softmax"}, "kind must be one of"),
        ((q, k[:, :-1], v), {}, "expects q, k of one shape"),
        ((q, k[..., :-1], v), {}, "expects q, k of one shape"),
        ((q, k, v[:, :-1]), {}, "expects q, k of one shape"),
        ((q[0, 0], k[0, 0], v[0, 0]), {}, "expects q, k of one shape"),
        ((q, k, v, zq[..., :-1], zk), {}, "must have q's shape"),
        ((q, k, v, zq, zk[:, :-1]), {}, "must have q's shape"),
        ((q, k, v.double()), {}, "one floating dtype"),
        ((q.int(), k.int(), v.int()), {}, "one floating dtype"),
        ((q, k, v, zq.half(), zk), {}, "one floating dtype"),
        ((q, k, v.to("meta")), {}, "one device"),
    ]
    for args, kwargs, message in cases:
        kwargs = {"kind": "inline", **kwargs}
        with use_kernels(backend), pytest.raises(ValueError, match=message):
            linear_attention(*args, **kwargs)
        with pytest.raises(ValueError, match=message):
            linear_attention_reference(*args, **kwargs)


class _Ops(torch.utils._python_dispatch.TorchDispatchMode):
    """Records the ops that run."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(
    ("dtype", "d"),
    [(torch.float64, 16), (torch.float32, linear_op.MAX_WIDTH + 1)],
    ids=["float64", "wide-head"],
)
def test_unsupported_inputs_fall_back_or_raise(dtype, d):
    """auto runs the reference for float64 or D > 128; a forced triton backend raises instead."""
    q, k, v, _, _ = (t.to(DEVICE, dtype) for t in _problem("inline", (1,), 5, d, 8))
    with use_kernels("auto"), _Ops() as ops:
        out = linear_attention(q, k, v, kind="inline")
    assert out.dtype == dtype
    assert not any("attnzoo" in c for c in ops.calls)
    torch.testing.assert_close(out, linear_attention_reference(q, k, v, kind="inline"))
    with use_kernels("triton"), pytest.raises(RuntimeError, match="does not support"):
        linear_attention(q, k, v, kind="inline")


def test_triton_backend_runs_the_op():
    q, k, v, _, _ = (t.to(DEVICE) for t in _problem("mala", (1,), 5))
    with use_kernels("triton"), _Ops() as ops:
        linear_attention(q, k, v, kind="mala")
    assert "attnzoo.linear_attention.default" in ops.calls


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("lead", "n"), [((0, 2), 7), ((2,), 0)], ids=["no-slices", "no-tokens"])
def test_empty_inputs(backend, lead, n):
    tensors = [t.to(DEVICE).requires_grad_() for t in _problem("mala", lead, n)]
    with use_kernels(backend):
        out = linear_attention(*tensors, kind="mala")
    assert out.shape == (*lead, n, 12) and out.dtype == torch.float32
    out.sum().backward()
    for t in tensors:
        assert t.grad.shape == t.shape and not t.grad.any()


def test_deterministic_and_strided_inputs():
    """Two backward passes agree bit for bit (chunk sums in a fixed order, no atomics); q, k, v taken
    as head-split views of ``[B, N, H * D]`` give the contiguous inputs' results."""
    gen = torch.Generator().manual_seed(7)
    qkv = torch.randn(2, 300, 3 * 2 * 16, generator=gen).to(DEVICE)
    views = [t.unflatten(-1, (2, 16)).transpose(1, 2) for t in qkv.chunk(3, dim=-1)]  # [B, H, N, D]
    assert not views[0].is_contiguous()
    grad = torch.randn(2, 2, 300, 16, generator=gen).to(DEVICE)
    results = []
    for inputs in (views, views, [t.contiguous() for t in views]):
        inputs = [t.detach().requires_grad_() for t in inputs]
        with use_kernels("triton"):
            out = linear_attention(*inputs, kind="inline")
        results.append([out, *torch.autograd.grad(out, inputs, grad)])
    for a, b, c in zip(*results, strict=True):
        assert torch.equal(a, b)
        assert torch.equal(a, c)


def test_opcheck_inline():
    """The kernel battery opchecks its opcheck seed (MALA); the InLine branch of both ops here."""
    tensors, args = SPEC.make_problem(1)
    assert args[0] == "inline"
    inputs = [t.to(DEVICE).requires_grad_() for t in tensors]
    checks = ("test_schema", "test_autograd_registration", "test_faketensor")
    torch.library.opcheck(SPEC.forward_op, (*inputs, *args), test_utils=checks)
    out, stats = SPEC.forward_op(*inputs, *args)
    grad = torch.randn_like(out)
    backward_args = (grad, *(t.detach() for t in inputs), stats.detach(), *args)
    torch.library.opcheck(SPEC.backward_op, backward_args, test_utils=checks)

"""Infinite Self-Attention (pure and linear) beyond the kernel battery: eps / scale, the official formula,
fp16 overflow, all-negative logits, dispatch and rho, named shape errors, and the work splits against
the float64 reference (linear: token chunks, one or several, the last ragged, the GPU chunking; pure:
the 128-token program tiles of long slices, ``<dO, O>`` from per-tile shares or inline)."""

import pytest
import torch

from attnzoo.kernels import (
    infsa_linear,
    infsa_linear_reference,
    infsa_pure,
    infsa_pure_reference,
    use_kernels,
)
from attnzoo.kernels.infinite_attention import infsa_linear_scores_reference, infsa_pure_scores_reference
from attnzoo.kernels.infinite_attention import op as infsa_op
from attnzoo.kernels.infinite_attention.spec import make_problem
from attnzoo.kernels.registry import KERNELS
from tests.helpers.kernel_check import DEVICE, check_spec

REFERENCES = {"pure": infsa_pure_reference, "linear": infsa_linear_reference}


def random_qkv(seed: int) -> list[torch.Tensor]:
    """q, k, v of the battery's random problem ``seed``."""
    return make_problem(seed)[0]


@pytest.mark.parametrize("op", ["pure", "linear"])
def test_eps_and_scale_are_honoured(op):
    """Both outputs are scale-invariant but for eps: a large eps makes a wrong scale or eps visible."""
    q, k, v = random_qkv(2)
    eps, scale = 0.05, 0.3
    check_spec(KERNELS[f"infsa_{op}"], [q, k, v], (scale, eps), torch.float32)
    default = REFERENCES[op](q, k, v)
    assert (REFERENCES[op](q, k, v, scale=scale, eps=eps) - default).abs().max() > 1e-3


PUBLIC = {"pure": infsa_pure, "linear": infsa_linear}


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("op", ["pure", "linear"])
def test_public_functions_honour_scale_and_eps(op, backend):
    """The public functions pass a non-default scale / eps on, on both paths (a large eps makes the
    scale visible, see above), and apply rho."""
    q, k, v = (t.to(DEVICE) for t in random_qkv(2))
    eps, scale = 0.05, 0.3
    with use_kernels(backend):
        out = PUBLIC[op](q, k, v, 0.7, scale, eps)
    want = REFERENCES[op](*(t.cpu() for t in (q, k, v)), scale=scale, eps=eps)
    torch.testing.assert_close(out.cpu(), 0.7 * want, atol=2e-5, rtol=2e-5)


def test_reference_is_the_official_formula_float64():
    """Pure: rho * relu(qs ks^T) / (||.||_F + eps) @ v; linear: energy-pooled query, relu weights."""
    q, k, v = (t.double() for t in random_qkv(3))
    d = q.shape[-1]
    s = d**-0.5
    r = torch.relu((q * s) @ (k * s).transpose(-1, -2))
    n = r.pow(2).sum(dim=(-1, -2), keepdim=True).sqrt()
    torch.testing.assert_close(
        infsa_pure_reference(q, k, v, 0.7), 0.7 * (r / (n + 1e-6)) @ v, rtol=0, atol=1e-14
    )
    energy = (q * s).norm(dim=-1, keepdim=True)
    q_bar = (energy / (energy.sum(-2, keepdim=True) + 1e-6) * q * s).sum(-2, keepdim=True)
    a = torch.relu((q_bar * k * s).sum(-1, keepdim=True))
    pooled = (a / (a.sum(-2, keepdim=True) + 1e-6) * v).sum(-2)
    torch.testing.assert_close(infsa_linear_reference(q, k, v, 0.7), 0.7 * pooled, rtol=0, atol=1e-14)
    assert infsa_pure_scores_reference(q, k).shape == (*q.shape[:2], q.shape[1])
    weight_sums = infsa_linear_scores_reference(q, k).sum(-1)  # 1 - eps / sum(relu)
    torch.testing.assert_close(weight_sums, torch.ones_like(weight_sums), atol=1e-4, rtol=0)


@pytest.mark.parametrize("op", ["pure", "linear"])
def test_fp16_large_logits_stay_finite_and_correct(op):
    """Logits of ~1e3: relu(S)**2 and its sum overflow fp16; kernels and references accumulate in fp32."""
    gen = torch.Generator().manual_seed(0)
    q, k = (40 * torch.randn(2, 45, 32, generator=gen).abs() for _ in range(2))
    v = torch.randn(2, 45, 16, generator=gen)
    h = [t.half() for t in (q, k, v)]
    logits = (h[0].float() @ h[1].float().transpose(-1, -2)) / q.shape[-1]
    assert logits.min() > 100
    assert torch.isinf(logits.half().pow(2).sum()), "the test must overflow a naive fp16 sum of squares"
    ref = REFERENCES[op](*[t.float() for t in h])
    half_ref = REFERENCES[op](*h)
    assert half_ref.dtype == torch.float16 and torch.isfinite(half_ref).all()
    torch.testing.assert_close(half_ref.float(), ref, atol=3e-3, rtol=3e-3)
    with use_kernels("triton"):
        out = (infsa_pure if op == "pure" else infsa_linear)(*(t.to(DEVICE) for t in h))
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    torch.testing.assert_close(out.float().cpu(), ref, atol=3e-3, rtol=3e-3)
    check_spec(KERNELS[f"infsa_{op}"], [q, k, v], (q.shape[-1] ** -0.5, 1e-6), torch.float16)


@pytest.mark.parametrize("op", ["pure", "linear"])
def test_all_negative_logits(op):
    """relu kills every logit: the output is 0 (the eps keeps it finite) and so are q / k gradients."""
    gen = torch.Generator().manual_seed(0)
    q = torch.rand(2, 21, 16, generator=gen) + 0.1
    k = -(torch.rand(2, 21, 16, generator=gen) + 0.1)
    v = torch.randn(2, 21, 16, generator=gen)
    errs = check_spec(KERNELS[f"infsa_{op}"], [q, k, v], (q.shape[-1] ** -0.5, 1e-6), torch.float32)
    assert errs["out"] == 0.0


@pytest.mark.parametrize("op", ["pure", "linear"])
def test_dispatch_and_rho_gradient(op):
    """Public entry points: 4-d inputs, a tensor rho that receives its gradient, both backends agree."""
    fn = infsa_pure if op == "pure" else infsa_linear
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 3, 19, 16, generator=gen) for _ in range(3))
    results = {}
    for backend in ("torch", "triton"):
        rho = torch.tensor(0.6, requires_grad=True)
        with use_kernels(backend):
            out = fn(q.to(DEVICE), k.to(DEVICE), v.to(DEVICE), rho.to(DEVICE))
        out.square().sum().backward()
        results[backend] = (out.detach().cpu(), rho.grad)
    assert results["torch"][0].shape == ((2, 3, 19, 16) if op == "pure" else (2, 3, 16))
    torch.testing.assert_close(results["triton"][0], results["torch"][0], atol=2e-5, rtol=2e-5)
    torch.testing.assert_close(results["triton"][1], results["torch"][1], atol=1e-4, rtol=1e-4)
    assert results["torch"][1].abs() > 0


def test_bad_shapes_are_named():
    q, k, v = random_qkv(2)
    for fn in (infsa_pure, infsa_linear):
        with pytest.raises(ValueError, match="expects q, k of one shape"):
            fn(q, k[:, :-1], v)
        with pytest.raises(ValueError, match="expects q, k of one shape"):
            fn(q, k, v[:, :-1])


def _vs_float64(op, bh, n, dqk=16, dv=12, seed=0):
    """The Triton op in fp32 against the float64 reference, forward and q / k / v gradients, each
    relative to ``max(1, |reference|)`` below 2e-5; then the kernel battery's fp16 (and, on a GPU,
    bf16) check."""
    gen = torch.Generator().manual_seed(seed)
    tensors = [torch.randn(bh, n, d, generator=gen, dtype=torch.float64) for d in (dqk, dqk, dv)]
    ref_in = [t.clone().requires_grad_() for t in tensors]
    ref = REFERENCES[op](*ref_in)
    grad = torch.randn(ref.shape, generator=gen, dtype=torch.float64)
    want = torch.autograd.grad(ref, ref_in, grad)
    got_in = [t.float().to(DEVICE).requires_grad_() for t in tensors]
    with use_kernels("triton"):
        out = PUBLIC[op](*got_in)
    got = torch.autograd.grad(out, got_in, grad.float().to(DEVICE))
    errors = {
        name: (a.cpu().double() - b).abs().max().item() / max(1.0, b.abs().max().item())
        for name, a, b in zip(("out", "q", "k", "v"), (out, *got), (ref, *want), strict=True)
    }
    assert max(errors.values()) < 2e-5, errors
    for dtype in (torch.float16, *((torch.bfloat16,) if DEVICE == "cuda" else ())):
        check_spec(KERNELS[f"infsa_{op}"], [t.float() for t in tensors], (dqk**-0.5, 1e-6), dtype)


@pytest.mark.parametrize(
    ("bh", "n", "split"),
    [(1, 20, (32, 1)), (1, 96, (32, 3)), (2, 150, (64, 3))],
    ids=["shorter-than-a-chunk", "whole-chunks", "ragged-last-chunk"],
)
def test_linear_chunks_match_float64_reference(monkeypatch, bh, n, split):
    """Linear InfSA over one token chunk (one launch each way) and over several (partial rows summed
    in chunk order by every program of the next pass), under the interpreter's chunk budget (also on
    a GPU)."""
    monkeypatch.setattr(infsa_op, "LINEAR_GPU_TILES", infsa_op.LINEAR_INTERPRETER_TILES)
    assert infsa_op.linear_chunking(bh, n, 32) == split
    _vs_float64("linear", bh, n)


def test_linear_gpu_chunking(monkeypatch):
    """The chunks a GPU gets: one for a ViT-B/16 layer at 224 px, batch 1 (197 tokens, a single
    launch each way); 256-token chunks for 4K tokens (16 chunks, 192 programs); at most 64 chunks for
    a long slice; and a ragged split, checked against the reference."""
    monkeypatch.setattr(infsa_op, "LINEAR_INTERPRETER_TILES", infsa_op.LINEAR_GPU_TILES)
    assert infsa_op.linear_chunking(12, 197, 128) == (256, 1)
    assert infsa_op.linear_chunking(12, 4096, 128) == (256, 16)
    assert infsa_op.linear_chunking(1, 100_000, 128) == (2048, 49)
    assert infsa_op.linear_chunking(1, 600, 128) == (256, 3)
    _vs_float64("linear", 1, 600, seed=1)


@pytest.mark.parametrize(
    ("wide_from", "inline_upto", "tiles"),
    [(100, 0, (128, 64)), (2048, 0, (64, 64)), (2048, 256, (64, 64))],
    ids=["wide-tiles-delta-shares", "delta-shares", "inline-delta"],
)
def test_pure_tiles_match_float64_reference(monkeypatch, wide_from, inline_upto, tiles):
    """Long slices' 128-token query (forward, dq) and key (dk, dv) program tiles over 64-token inner
    tiles, the last ragged, and ``<dO, O>`` from per-tile shares or summed by every program (forced
    here at 150 tokens). 16-bit inputs take those tiles (the fp16 check); fp32 takes 32-token tiles
    throughout (the fp32 check)."""
    monkeypatch.setattr(infsa_op, "PURE_WIDE_FROM", wide_from)
    monkeypatch.setattr(infsa_op, "PURE_INLINE_DELTA_UPTO", inline_upto)
    q = torch.empty(2, 150, 16, dtype=torch.float16)
    assert infsa_op._pure_meta(q, q)[:2] == tiles
    assert infsa_op._pure_meta(q.float(), q.float())[:2] == (32, 32)
    _vs_float64("pure", 2, 150, seed=2)

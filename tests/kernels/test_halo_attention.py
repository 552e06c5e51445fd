"""Triton halo attention vs its torch reference, forward and backward, on random shapes."""

import pytest
import torch

from attnzoo.kernels import halo_attention, use_kernels
from attnzoo.kernels.halo_attention import halo_attention_reference
from tests.helpers.kernel_check import DEVICE, KERNEL_DTYPES, check_against_reference


def random_problem(seed: int):
    """A random halo problem: block sizes, halo, heads, dims and grid drawn from the seed."""
    gen = torch.Generator().manual_seed(seed)

    def pick(*options):
        return options[torch.randint(len(options), (1,), generator=gen).item()]

    block_kv = pick(2, 3, 4, 5)
    block_q = pick(block_kv, block_kv // 2) if block_kv % 2 == 0 else block_kv
    halo = pick(0, 1, 2)
    win = block_kv + 2 * halo
    bh, nbh, nbw = pick(1, 2, 3), pick(1, 2), pick(1, 2, 3)
    dqk, dv = pick(4, 8, 16, 20), pick(4, 8, 12, 16)
    hq, wq = nbh * block_q, nbw * block_q
    hk, wk = nbh * block_kv + 2 * halo, nbw * block_kv + 2 * halo

    def t(*shape):
        return torch.randn(*shape, generator=gen)

    tensors = [
        t(bh, hq, wq, dqk),
        t(bh, hk, wk, dqk),
        t(bh, hk, wk, dv),
        t(bh, hq, wq, 2 * win - 1),
        t(bh, hq, wq, 2 * win - 1),
    ]
    meta = (block_q, block_kv, win, dqk**-0.5)
    return tensors, meta


def triton_halo(meta):
    def run(*tensors):
        return torch.ops.attnzoo.halo_attention(*tensors, *meta)[0]

    return run


def reference_halo(meta):
    def run(*tensors):
        return halo_attention_reference(*tensors, *meta)

    return run


@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
@pytest.mark.parametrize("seed", range(6))
def test_kernel_matches_reference(seed, dtype):
    tensors, meta = random_problem(seed)
    check_against_reference(triton_halo(meta), reference_halo(meta), tensors, dtype, seed=seed)


def test_dispatch_uses_kernel_only_when_asked():
    tensors, meta = random_problem(0)
    tensors = [t.to(DEVICE) for t in tensors]
    with use_kernels("torch"):
        ref = halo_attention(*tensors, *meta)
    with use_kernels("triton"):
        out = halo_attention(*tensors, *meta)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=2e-5)


def test_bad_shapes_are_named():
    tensors, meta = random_problem(1)
    q, k, v, qrh, qrw = tensors
    with pytest.raises(ValueError, match="not a multiple of block_q"):
        halo_attention_reference(q[:, :-1], k, v, qrh[:, :-1], qrw[:, :-1], *meta)
    with pytest.raises(ValueError, match="k/v grid"):
        halo_attention_reference(q, k[:, :-1], v, qrh, qrw, *meta)
    with pytest.raises(ValueError, match="relative logits"):
        halo_attention_reference(q, k, v, qrh[..., :-1], qrw, *meta)


def test_custom_op_registration():
    """Schema, autograd registration and fake (meta) impl are consistent (what torch.compile relies on).

    The AOT-dispatch checks run the kernel on functional tensors, which the CPU interpreter cannot
    do, so they run on GPU only.
    """
    tensors, meta = random_problem(2)
    tensors = [t.to(DEVICE).requires_grad_() for t in tensors]
    utils = ("test_schema", "test_autograd_registration", "test_faketensor")
    if DEVICE == "cuda":
        utils += ("test_aot_dispatch_dynamic",)
    torch.library.opcheck(torch.ops.attnzoo.halo_attention.default, (*tensors, *meta), test_utils=utils)

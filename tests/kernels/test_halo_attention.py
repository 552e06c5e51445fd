"""Halo attention beyond the kernel battery: dispatch and named shape errors."""

import importlib

import pytest
import torch

from attnzoo.kernels import halo_attention, use_kernels
from attnzoo.kernels.halo_attention import halo_attention_reference
from attnzoo.kernels.halo_attention.spec import make_problem
from tests.helpers.kernel_check import DEVICE, check_against_reference


def test_dispatch_uses_kernel_only_when_asked():
    tensors, meta = make_problem(0)
    tensors = [t.to(DEVICE) for t in tensors]
    with use_kernels("torch"):
        ref = halo_attention(*tensors, *meta)
    with use_kernels("triton"):
        out = halo_attention(*tensors, *meta)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=2e-5)


def test_bad_shapes_are_named():
    tensors, meta = make_problem(1)
    q, k, v, qrh, qrw = tensors
    with pytest.raises(ValueError, match="not a multiple of block_q"):
        halo_attention_reference(q[:, :-1], k, v, qrh[:, :-1], qrw[:, :-1], *meta)
    with pytest.raises(ValueError, match="k/v grid"):
        halo_attention_reference(q, k[:, :-1], v, qrh, qrw, *meta)
    with pytest.raises(ValueError, match="relative logits"):
        halo_attention_reference(q, k, v, qrh[..., :-1], qrw, *meta)


def _problem(bh: int, nbh: int, nbw: int, block_q: int, block_kv: int, halo: int, d: int, seed: int = 0):
    """Random inputs for a ``nbh x nbw`` block grid (k/v padded by ``halo``), head dim ``d``."""
    gen = torch.Generator().manual_seed(seed)
    win = block_kv + 2 * halo
    hq, wq = nbh * block_q, nbw * block_q
    hk, wk = nbh * block_kv + 2 * halo, nbw * block_kv + 2 * halo
    shapes = [(hq, wq, d), (hk, wk, d), (hk, wk, d), (hq, wq, 2 * win - 1), (hq, wq, 2 * win - 1)]
    return [torch.randn(bh, *s, generator=gen) for s in shapes], (block_q, block_kv, win, d**-0.5)


# The backward's geometry: a key tile of the padded map is seen by cdiv(win, block_kv)^2 query blocks,
# fewer at the borders; stride 2 (block_q < block_kv) stacks several query blocks per step; halo >
# block_kv / 2 makes a window reach past the neighbouring blocks (three candidate block rows); a
# window of more than one key chunk runs the online softmax; partial key tiles at the map's end.
GEOMETRIES = {
    "stride2-halo-gt-half": (2, 2, 3, 2, 4, 3, 8),
    "stride2-halonet": (1, 2, 1, 4, 8, 2, 16),
    "square-win14": (1, 1, 2, 8, 8, 3, 8),
    "no-halo-nonsquare": (3, 1, 4, 2, 2, 0, 4),
    "odd-block": (2, 3, 2, 3, 3, 2, 12),
}


@pytest.mark.parametrize("geometry", GEOMETRIES.values(), ids=GEOMETRIES.keys())
def test_gradients_match_reference_across_geometries(geometry):
    tensors, meta = _problem(*geometry)

    def kernel(*t):
        with use_kernels("triton"):
            return halo_attention(*t, *meta)

    check_against_reference(kernel, lambda *t: halo_attention_reference(*t, *meta), tensors, torch.float32)


@pytest.mark.parametrize("keys", [4, 6], ids=["1-row-parts", "ragged-2-row-parts"])
def test_fp32_key_tiles_split_over_programs(monkeypatch, keys):
    """In fp32 a dK/dV program takes ``_FP32_DKV_KEYS`` keys of its tile (registers); a budget of a few
    keys splits 3x3 key tiles into 1-row parts, or into 2-row parts whose last one is half past the
    tile, and every key is still covered once."""
    op_module = importlib.import_module("attnzoo.kernels.halo_attention.op")
    monkeypatch.setattr(op_module, "_FP32_DKV_KEYS", keys)
    tensors, meta = _problem(*GEOMETRIES["odd-block"])

    def kernel(*t):
        with use_kernels("triton"):
            return halo_attention(*t, *meta)

    check_against_reference(kernel, lambda *t: halo_attention_reference(*t, *meta), tensors, torch.float32)

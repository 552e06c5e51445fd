"""HaloAttention: timm's HaloAttn math at block multiples, any size elsewhere, Triton path wired."""

import pytest
import torch
import torch.nn.functional as F
from timm.layers.halo_attn import HaloAttn

from attnzoo.kernels import use_kernels
from attnzoo.layers import HaloAttention
from tests.helpers.kernel_check import DEVICE

CONFIGS = [
    dict(block_size=8, halo_size=2),
    dict(block_size=8, halo_size=3, stride=2),
    dict(block_size=7, halo_size=2, stride=2, qk_ratio=0.33),  # odd block: average-pool downsample
    dict(block_size=4, halo_size=1, dim_head=8, scale_pos_embed=True, qkv_bias=True),
]


def pair(cfg):
    torch.manual_seed(0)
    theirs = HaloAttn(32, 32, num_heads=4, **cfg).double().eval()
    ours = HaloAttention(32, 32, num_heads=4, **cfg).double().eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return theirs, ours


@pytest.mark.parametrize("cfg", CONFIGS, ids=str)
def test_equals_timm_at_block_multiples(cfg):
    theirs, ours = pair(cfg)
    b = cfg["block_size"]
    x = torch.randn(2, 32, 2 * b, 4 * b, dtype=torch.float64)
    with use_kernels("torch"):
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("cfg", [c for c in CONFIGS if not c.get("qkv_bias")], ids=str)
@pytest.mark.parametrize("size", [(13, 9), (17, 30), (5, 5)])
def test_any_size_equals_zero_padded_timm(cfg, size):
    """Off-grid sizes: same as timm on the zero-padded map, cropped (positions outside act as halo).
    An odd block with stride 2 attends at full resolution and average-pools: timm's full-resolution
    result on the padded map, cropped to the input, then 2 x 2 averages (a window cut by the border
    averages the positions inside it)."""
    theirs, ours = pair(cfg)
    b = cfg["block_size"]
    h, w = size
    x = torch.randn(1, 32, h, w, dtype=torch.float64)
    padded = F.pad(x, (0, (-w) % b, 0, (-h) % b))
    stride = cfg.get("stride", 1)
    out = ours(x)
    assert out.shape[-2:] == (-(-h // stride), -(-w // stride))
    if isinstance(theirs.pool, torch.nn.AvgPool2d):
        theirs.pool = torch.nn.Identity()
        want = F.avg_pool2d(theirs(padded)[..., :h, :w], 2, ceil_mode=True)
    else:
        want = theirs(padded)[..., : out.shape[-2], : out.shape[-1]]
    torch.testing.assert_close(out, want, rtol=0, atol=1e-12)


def test_triton_path_matches_reference_with_gradients():
    torch.manual_seed(0)
    layer = HaloAttention(16, 16, num_heads=2, block_size=4, halo_size=1).to(DEVICE)
    x = torch.randn(2, 16, 9, 11, device=DEVICE, requires_grad=True)
    with use_kernels("torch"):
        ref = layer(x)
        ref_grads = torch.autograd.grad(ref.square().sum(), [x, *layer.parameters()])
    with use_kernels("triton"):
        out = layer(x)
        grads = torch.autograd.grad(out.square().sum(), [x, *layer.parameters()])
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=2e-5)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, atol=1e-4, rtol=1e-4)


def test_wrong_channels_are_named():
    layer = HaloAttention(16, 16, num_heads=2, block_size=4, halo_size=1)
    with pytest.raises(ValueError, match="expects 16 input channels, got 8"):
        layer(torch.randn(1, 8, 8, 8))


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        HaloAttention(30, 30, num_heads=4)
    with pytest.raises(ValueError, match="stride"):
        HaloAttention(32, 32, stride=3)

"""Structural re-parameterisation: parallel BatchNorm'd depthwise branches folded into one conv.

UniRepLKNet's dilated re-param block (Ding et al., arXiv:2311.15599) trains a large depthwise conv
beside smaller dilated ones, each followed by BatchNorm; in eval mode their sum is one large depthwise
conv with a bias. :meth:`DilatedReparamBlock.reparameterize` computes that conv exactly (zero-inserted
dilated kernels, BatchNorm folded in the model's own dtype, so float64 stays float64), which
``timm.utils.reparameterize_model`` calls on every block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DilatedReparamBlock", "dilate_kernel", "fold_batchnorm"]

# kernel size -> (branch kernel sizes, dilations), UniRepLKNet's defaults (OverLoCK uses 7, 13, 15, 17).
_BRANCHES: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {
    19: ((5, 7, 9, 9, 3, 3, 3), (1, 1, 1, 2, 4, 5, 7)),
    17: ((5, 7, 9, 3, 3, 3), (1, 1, 2, 4, 5, 7)),
    15: ((5, 7, 7, 3, 3, 3), (1, 1, 2, 3, 5, 7)),
    13: ((5, 7, 7, 3, 3, 3), (1, 1, 2, 3, 4, 5)),
    11: ((5, 7, 5, 3, 3, 3), (1, 1, 2, 3, 4, 5)),
    9: ((5, 7, 5, 3, 3), (1, 1, 2, 3, 4)),
    7: ((5, 3, 3, 3), (1, 1, 2, 3)),
    5: ((3, 3), (1, 2)),
}


def fold_batchnorm(weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm2d):
    """``(weight', bias')`` of the conv equal to ``bn(conv(x))`` in eval mode."""
    scale = bn.weight / (bn.running_var + bn.eps).sqrt()
    shift = bn.bias - bn.running_mean * scale
    if bias is not None:
        shift = shift + bias * scale
    return weight * scale.reshape(-1, 1, 1, 1), shift


def dilate_kernel(weight: torch.Tensor, dilation: int) -> torch.Tensor:
    """The undilated kernel equal to ``weight`` applied with ``dilation``: zeros between the taps."""
    if dilation == 1:
        return weight
    out_c, in_c, kh, kw = weight.shape
    dilated = weight.new_zeros(out_c, in_c, dilation * (kh - 1) + 1, dilation * (kw - 1) + 1)
    dilated[:, :, ::dilation, ::dilation] = weight
    return dilated


class DilatedReparamBlock(nn.Module):
    """A ``kernel_size`` depthwise conv + BN plus dilated depthwise conv + BN branches, summed.

    ``deploy=True`` builds the folded form directly (one depthwise conv with bias, key
    ``lk_origin``), the structure of re-parameterised checkpoints. Keys follow UniRepLKNet / OverLoCK:
    ``lk_origin``, ``origin_bn``, ``dil_conv_k{k}_{r}``, ``dil_bn_k{k}_{r}``.
    """

    def __init__(
        self, channels: int, kernel_size: int, deploy: bool = False, device=None, dtype=None
    ) -> None:
        super().__init__()
        if kernel_size not in _BRANCHES:
            raise ValueError(
                f"DilatedReparamBlock supports kernel sizes {sorted(_BRANCHES)}, got {kernel_size}"
            )
        dd = dict(device=device, dtype=dtype)
        self.kernel_sizes, self.dilates = _BRANCHES[kernel_size]
        self.lk_origin = nn.Conv2d(
            channels, channels, kernel_size, padding=kernel_size // 2, groups=channels, bias=deploy, **dd
        )
        if deploy:
            return
        self.origin_bn = nn.BatchNorm2d(channels, **dd)
        for k, r in zip(self.kernel_sizes, self.dilates, strict=True):
            conv = nn.Conv2d(
                channels,
                channels,
                k,
                padding=(r * (k - 1) + 1) // 2,
                dilation=r,
                groups=channels,
                bias=False,
                **dd,
            )
            setattr(self, f"dil_conv_k{k}_{r}", conv)
            setattr(self, f"dil_bn_k{k}_{r}", nn.BatchNorm2d(channels, **dd))

    @property
    def deployed(self) -> bool:
        return not hasattr(self, "origin_bn")

    def _branches(self):
        for k, r in zip(self.kernel_sizes, self.dilates, strict=True):
            yield getattr(self, f"dil_conv_k{k}_{r}"), getattr(self, f"dil_bn_k{k}_{r}"), r

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deployed:
            return self.lk_origin(x)
        out = self.origin_bn(self.lk_origin(x))
        for conv, bn, _ in self._branches():
            out = out + bn(conv(x))
        return out

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fold every branch into ``lk_origin`` (with bias) and drop them; eval-mode outputs are kept."""
        if self.deployed:
            return
        weight, bias = fold_batchnorm(self.lk_origin.weight, None, self.origin_bn)
        size = weight.shape[-1]
        for conv, bn, r in self._branches():
            w, b = fold_batchnorm(conv.weight, None, bn)
            w = dilate_kernel(w, r)
            pad = (size - w.shape[-1]) // 2
            weight = weight + F.pad(w, [pad] * 4)
            bias = bias + b
        fused = nn.Conv2d(
            weight.shape[0],
            weight.shape[0],
            size,
            padding=size // 2,
            groups=weight.shape[0],
            bias=True,
            device=weight.device,
            dtype=weight.dtype,
        )
        fused.weight.copy_(weight)
        fused.bias.copy_(bias)
        self.lk_origin = fused
        del self.origin_bn
        for k, r in zip(self.kernel_sizes, self.dilates, strict=True):
            delattr(self, f"dil_conv_k{k}_{r}")
            delattr(self, f"dil_bn_k{k}_{r}")

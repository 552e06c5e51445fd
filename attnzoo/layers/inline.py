"""InLine attention's shared pieces (Han et al., "Bridging the Divide: Reconsidering Softmax and Linear
Attention", NeurIPS 2024): injective linear attention and its local residual.

Injective linear attention, per head over a token set of size ``N`` (a whole image, a window or a
stripe), ``s = head_dim ** -0.5``::

    out_i = (s / N) * q_i K^T V + (1 - s * q_i . mean_j k_j) * mean_j v_j

(:func:`attnzoo.kernels.linear_attention`, ``kind='inline'``; the kernel function on q and k is the
identity in every released config). The local residual adds, on the token grid, a 3x3 depthwise
convolution of ``v`` whose kernel is predicted per image (and channel) from the mean input token by
two grouped 1x1 convs with a GELU between (official ``residual``: ``Conv1d(C, C, groups=heads)``,
``Conv1d(C, 9C, groups=heads)``). The official code runs it as one grouped ``conv2d`` over
``B * C`` groups; here it is nine shifted multiply-adds, the same sum, and exportable with a dynamic
batch.

Families use :class:`InjectiveLinearAttention` (timm ``Attention``'s fused ``qkv`` / ``proj``: InLine-DeiT
and InLine-Swin) or build their own projections around :class:`LocalResidual` and
:func:`injective_attention` (InLine-PVT's ``q`` / ``kv``, InLine-CSwin's stripes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_function
from torch import nn

from attnzoo.kernels.linear_attention import linear_attention

__all__ = ["InjectiveLinearAttention", "LocalResidual", "apply_local_kernels", "injective_attention"]

# torch.fx keeps these as single calls, also when a subclass's forward (another module's globals)
# reaches them through this module's code: ``torch.fx.wrap`` patches this module's globals while tracing.
register_notrace_function(linear_attention)
torch.fx.wrap("linear_attention")

_KERNEL_FUNCS = {"identity": None, "relu": F.relu, "leakyrelu": F.leaky_relu, "exp": None}


@torch.fx.wrap
@register_notrace_function  # checks shapes and picks a kernel: torch.fx keeps it as one call
def injective_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """Injective linear attention on ``[..., N, D]`` q, k and ``[..., N, Dv]`` v (no local residual)."""
    return linear_attention(q, k, v, kind="inline", scale=scale)


@torch.fx.wrap
@register_notrace_function  # slices by the map size: torch.fx keeps it as one call
def apply_local_kernels(v: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """``v`` (``[B, C, H, W]``) convolved (cross-correlation, zero padding 1) with one 3x3 kernel per
    image and channel (``kernels``: ``[B, C, 9]``, row-major taps)."""
    h, w = v.shape[-2:]
    padded = F.pad(v, (1, 1, 1, 1))
    out = torch.zeros_like(v)
    for tap in range(9):
        dy, dx = divmod(tap, 3)
        out = out + padded[:, :, dy : dy + h, dx : dx + w] * kernels[:, :, tap, None, None]
    return out


class LocalResidual(nn.Sequential):
    """Predicts each image's 3x3 depthwise kernels from its mean token (keys ``0`` and ``2``, as the
    official ``residual``); :meth:`kernels` returns them as ``[B, C, 9]``."""

    def __init__(self, dim: int, num_heads: int, device=None, dtype=None) -> None:
        dd = dict(device=device, dtype=dtype)
        super().__init__(
            nn.Conv1d(dim, dim, 1, groups=num_heads, **dd),
            nn.GELU(),
            nn.Conv1d(dim, 9 * dim, 1, groups=num_heads, **dd),
        )

    def kernels(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: the ``[B, N, C]`` tokens the kernels are predicted from (their mean)."""
        b, _, c = x.shape
        return self(x.mean(1).unsqueeze(-1)).reshape(b, c, 9)


class InjectiveLinearAttention(nn.Module):
    """InLine attention with timm ``Attention``'s projections (``qkv``, ``proj``) and the local residual.

    ``forward(x, grid, num_prefix_tokens)``: ``x`` is ``[B, N, C]`` with ``N = prefix + H * W`` tokens
    (``grid = (H, W)``, row-major); every token takes part in the attention (its ``N`` counts the
    prefix tokens, as the official DeiT form does); the local residual runs on the grid tokens only.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = True,
        kernel_func: str = "identity",
        proj_drop: float = 0.0,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        if kernel_func not in _KERNEL_FUNCS:
            raise ValueError(f"kernel_func must be one of {sorted(_KERNEL_FUNCS)}, got {kernel_func!r}")
        dd = dict(device=device, dtype=dtype)
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.kernel_func = kernel_func
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias, **dd)
        self.proj = nn.Linear(dim, dim, **dd)
        self.proj_drop = nn.Dropout(proj_drop)
        self.residual = LocalResidual(dim, num_heads, **dd)

    def _phi(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel_func == "exp":
            return torch.exp(0.2 * x)  # the official exp_kernel
        fn = _KERNEL_FUNCS[self.kernel_func]
        return x if fn is None else fn(x)

    def forward(self, x: torch.Tensor, grid: tuple[int, int], num_prefix_tokens: int = 0) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, c).unbind(2)
        q, k = self._phi(q), self._phi(k)
        q, k, v = (t.reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2) for t in (q, k, v))
        out = injective_attention(q, k, v, self.scale).transpose(1, 2).reshape(b, n, c)
        h, w = grid
        v_grid = v[:, :, num_prefix_tokens:].transpose(-1, -2).reshape(b, c, h, w)
        local = apply_local_kernels(v_grid, self.residual.kernels(x)).flatten(2).transpose(1, 2)
        if num_prefix_tokens:
            out = torch.cat([out[:, :num_prefix_tokens], out[:, num_prefix_tokens:] + local], dim=1)
        else:
            out = out + local
        return self.proj_drop(self.proj(out))

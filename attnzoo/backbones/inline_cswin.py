"""InLine-CSwin (Han et al., "Bridging the Divide: Reconsidering Softmax and Linear Attention", NeurIPS
2024, arXiv:2412.06590): the CSWin Transformer with injective linear attention (InLine) in some stages.

Same math and parameters as the official ``models/inline_cswin.py`` (builders ``inline_cswin_tiny`` /
``_small`` / ``_base`` / ``_base_384``, registered under those names) with the official configs
(``cfgs/inline_cswin_*.yaml``: ``attn_type='IISS'``; InLine split sizes ``56-28-14-7``, at 384
``96-48-24-12``), on the hierarchical skeleton. Official checkpoints convert on load
(:func:`convert_inline_cswin`: ``stage{i}.j`` -> ``stages.{i-1}.j``, ``merge{i}`` -> ``merge.{i}``; every
other key is the official one).

A block (``CSWinBlock``) projects the normed tokens to q, k, v and mixes them in ``attns``: either one
branch over one window, or two branches that split the channels (and heads) in half, the first
attending within stripes ``split_size`` wide spanning the full height, the second within stripes
``split_size`` tall spanning the full width. A branch is InLine (``'I'``, :class:`InLineStripeAttention`)
or softmax (``'S'``, :class:`LePEStripeAttention`); both add LePE, a depthwise 3x3 conv of v inside
each window (``get_v``), and InLine also the local residual (``residual``: a per-image 3x3 kernel
predicted from the mean of the block's *input* tokens). As in the official builder, a block has one
branch (one global window) when it is in the last stage or its split size equals its stage's map side
at ``img_size`` (so every InLine block of the released models is global, with all its heads).
``img_size`` decides only that structure; the model accepts any input size.

Any input size (the official code asserts square maps of exactly ``img_size // stride``, divisible by
the stripe width). Here:

* The stem pads the image with zeros at the bottom / right to a multiple of 4 before its 7x7 stride-4
  conv, so stage maps are ``ceil(H / r) x ceil(W / r)`` (the official stem, padding 2, gives
  ``floor((H - 3) / 4) + 1``, one less when ``H % 4`` is 1 or 2; at multiples of 4 the two agree).
* A global window is the whole map, whatever its size and shape: no padding.
* Stripes: q, k and v (after the projection) are padded with zeros at the bottom / right to whole
  stripes; the output is cropped back. The padding takes part in nothing: softmax stripes mask the
  padded keys out; InLine stripes count only a stripe's real tokens in their ``1 / N`` and means (one
  kernel call on rescaled inputs); LePE and the local residual see zeros there, which is what their
  zero-padded convs see at a stripe's edge anyway. A stripe layout with padding therefore gives, at the
  real tokens, exactly what narrower last stripes would.
* InLine stripes with more than one stripe per image (only with split sizes below the map side, in no
  released config) fail in the official code (the per-image residual kernels are reshaped per window);
  here every stripe of an image uses that image's kernels.

At the official resolutions nothing is padded and the model reproduces the official one (parity golden
``inline_cswin_tiny``). Beyond the official code: ``features_only`` / ``forward_intermediates`` (strides
4, 8, 16, 32), gradient checkpointing, SDPA for the softmax stripes and the Triton linear-attention
kernel on CUDA. The official repository has no licence file and no dense (detection / segmentation)
code for CSwin; the weights (TsinghuaCloud) are linked, never re-hosted.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import (
    DropPath,
    LayerNorm2d,
    Mlp,
    calculate_drop_path_rates,
    register_notrace_module,
    trunc_normal_,
)
from timm.models import register_model
from torch import nn

from attnzoo.backbones._convert import StateDict, detector_backbone, model_tensors, verify_against_model
from attnzoo.backbones._family import DenseLayout, Family, Weights, register_family
from attnzoo.backbones._hierarchical import HierarchicalBackbone, ModuleNames, Stage
from attnzoo.backbones._inline import INLINE_PAPER, inline_weights
from attnzoo.kernels.linear_attention import linear_attention
from attnzoo.layers.inline import LocalResidual, apply_local_kernels, injective_attention
from attnzoo.layers.padding import pad_to_multiple

__all__ = [
    "CSWinBlock",
    "InLineCSWin",
    "InLineStripeAttention",
    "LePEStripeAttention",
    "convert_inline_cswin",
    "parse_attn_types",
]


# ----------------------------------------------------------------------------- windows
def _to_windows(x: torch.Tensor, hs: int, ws: int) -> torch.Tensor:
    """``[B, H, W, C]`` (H, W multiples of hs, ws) -> ``[B * nW, hs * ws, C]``, windows batch-major,
    then row-major over the grid of windows; tokens row-major inside a window (official ``img2windows``)."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // hs, hs, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, hs * ws, c)


def _from_windows(x: torch.Tensor, b: int, h: int, w: int, hs: int, ws: int) -> torch.Tensor:
    """Inverse of :func:`_to_windows`: ``[B * nW, hs * ws, C]`` -> ``[B, H, W, C]``."""
    c = x.shape[-1]
    x = x.reshape(b, h // hs, w // ws, hs, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, c)


class _StripeAttention(nn.Module):
    """One branch of a CSWin block: windows (one global window, or stripes), LePE and the mixing.

    ``idx``: -1 one window over the whole map; 0 stripes ``split_size`` wide spanning the full height;
    1 stripes ``split_size`` tall spanning the full width (the official ``idx``). Subclasses define
    :meth:`mix` on ``[B', heads, n, head_dim]`` windows.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        idx: int = -1,
        split_size: int = 7,
        attn_drop: float = 0.0,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        if idx not in (-1, 0, 1):
            raise ValueError(f"idx must be -1 (global), 0 (full-height stripes) or 1 (full-width), got {idx}")
        if split_size < 1:
            raise ValueError(f"split_size must be positive, got {split_size}")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.idx = idx
        self.split_size = split_size
        self.attn_drop = attn_drop
        self.get_v = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, device=device, dtype=dtype)

    def window(self, h: int, w: int) -> tuple[int, int]:
        """The window (rows, columns) on an ``h x w`` map."""
        if self.idx == -1:
            return h, w
        return (h, self.split_size) if self.idx == 0 else (self.split_size, w)

    def mix(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        v_map: torch.Tensor,
        x_mean: torch.Tensor,
        valid: torch.Tensor | None,
    ) -> torch.Tensor:
        """``q, k, v``: ``[B', heads, n, head_dim]``; ``v_map``: ``[B', C, hs, ws]``; ``x_mean``: ``[B, C]``;
        ``valid``: ``[B', n]`` real (not padded) tokens, or None when nothing is padded.
        Returns ``[B', n, C]``."""
        raise NotImplementedError

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, x_mean: torch.Tensor
    ) -> torch.Tensor:
        """``q, k, v``: ``[B, H, W, C]`` maps; ``x_mean``: ``[B, C]``, the block input's mean token.
        Returns ``[B, H, W, C]``."""
        b, h, w, c = q.shape
        hs, ws = self.window(h, w)
        pad_h, pad_w = (-h) % hs, (-w) % ws
        valid = None
        if pad_h or pad_w:
            q, k, v = (F.pad(t, (0, 0, 0, pad_w, 0, pad_h)) for t in (q, k, v))
            real = F.pad(q.new_ones(1, h, w, 1), (0, 0, 0, pad_w, 0, pad_h))
            valid = (_to_windows(real, hs, ws)[..., 0] > 0).repeat(b, 1)
        hp, wp = h + pad_h, w + pad_w
        q, k, v = (_to_windows(t, hs, ws) for t in (q, k, v))  # [B', n, C]
        n = hs * ws
        v_map = v.transpose(1, 2).reshape(-1, c, hs, ws)
        lepe = self.get_v(v_map).flatten(2).transpose(1, 2)
        q, k, v = (t.reshape(-1, n, self.num_heads, self.head_dim).transpose(1, 2) for t in (q, k, v))
        out = self.mix(q, k, v, v_map, x_mean, valid) + lepe
        out = _from_windows(out, b, hp, wp, hs, ws)
        return out[:, :h, :w] if pad_h or pad_w else out


@register_notrace_module  # windows and padding follow the map size: torch.fx keeps the branch as one call
class LePEStripeAttention(_StripeAttention):
    """Softmax attention in each window (SDPA, scale ``head_dim ** -0.5``) plus LePE (official
    ``LePEAttention``). Padded keys are masked out."""

    def mix(self, q, k, v, v_map, x_mean, valid):
        mask = None if valid is None else valid[:, None, None, :]
        drop = self.attn_drop if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop, scale=self.scale)
        return out.transpose(1, 2).flatten(2)


@register_notrace_module  # windows and padding follow the map size: torch.fx keeps the branch as one call
class InLineStripeAttention(_StripeAttention):
    """Injective linear attention in each window plus the local residual and LePE (official
    ``InLineAttention``; ``attn_drop`` is accepted and unused, as there).

    The local residual's 3x3 kernels come from the block input's mean token (``x_mean``, this branch's
    channels) through ``residual``; every window of an image uses them. With padding, a window's
    ``1 / N`` and means count its real tokens only: with ``r = n / n_real``,
    ``linear_attention(q / r, r k, r v, zq=q, zk=r k)`` is exactly injective attention over the real
    tokens (padded k, v are zero).
    """

    def __init__(self, dim: int, num_heads: int, idx: int = -1, split_size: int = 7, **kwargs: Any) -> None:
        super().__init__(dim, num_heads, idx, split_size, **kwargs)
        self.residual = LocalResidual(dim, num_heads, device=kwargs.get("device"), dtype=kwargs.get("dtype"))

    def mix(self, q, k, v, v_map, x_mean, valid):
        if valid is None:
            out = injective_attention(q, k, v, self.scale)
        else:
            r = (q.shape[-2] / valid.sum(-1).to(q.dtype))[:, None, None, None]
            out = linear_attention(q / r, k * r, v * r, q, k * r, kind="inline", scale=self.scale)
        b, c = x_mean.shape
        kernels = self.residual(x_mean.unsqueeze(-1)).reshape(b, c, 9)
        kernels = kernels.repeat_interleave(v_map.shape[0] // max(b, 1), dim=0)  # windows per image
        local = apply_local_kernels(v_map, kernels).flatten(2).transpose(1, 2)
        return out.transpose(1, 2).flatten(2) + local


_MIXERS: dict[str, type[_StripeAttention]] = {"I": InLineStripeAttention, "S": LePEStripeAttention}


# ----------------------------------------------------------------------------- blocks and model
class CSWinBlock(nn.Module):
    """Pre-norm block: q, k, v from ``norm1`` -> one global branch or two stripe branches (half the
    channels and heads each) -> ``proj``; then the MLP. Channels-first maps in and out.

    ``attn``: ``'I'`` (InLine) or ``'S'`` (softmax); ``global_window``: one branch over the whole map.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        attn: str = "I",
        split_size: int = 7,
        global_window: bool = False,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        proj_drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if attn not in _MIXERS:
            raise ValueError(f"attn must be 'I' (InLine) or 'S' (softmax), got {attn!r}")
        dd = dict(device=device, dtype=dtype)
        self.dim = dim
        self.attn_type = attn
        self.branch_num = 1 if global_window else 2
        if self.branch_num == 2 and (dim % 2 or num_heads % 2):
            raise ValueError(
                f"stripe blocks split dim and heads in half: got dim {dim}, num_heads {num_heads}"
            )
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias, **dd)
        self.norm1 = nn.LayerNorm(dim, **dd)
        self.proj = nn.Linear(dim, dim, **dd)
        mixer = _MIXERS[attn]
        if global_window:
            branches = [mixer(dim, num_heads, -1, split_size, attn_drop=attn_drop, **dd)]
        else:
            branches = [
                mixer(dim // 2, num_heads // 2, i, split_size, attn_drop=attn_drop, **dd) for i in (0, 1)
            ]
        self.attns = nn.ModuleList(branches)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=proj_drop, **dd)
        self.norm2 = nn.LayerNorm(dim, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # [B, H, W, C]
        x_mean = x.mean((1, 2))
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        if self.branch_num == 1:
            y = self.attns[0](q, k, v, x_mean)
        else:
            half = self.dim // 2
            y = torch.cat(
                [
                    self.attns[0](q[..., :half], k[..., :half], v[..., :half], x_mean[:, :half]),
                    self.attns[1](q[..., half:], k[..., half:], v[..., half:], x_mean[:, half:]),
                ],
                dim=-1,
            )
        x = x + self.drop_path(self.proj(y))
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x.permute(0, 3, 1, 2)


class _ConvEmbed(nn.Sequential):
    """Conv 7x7 stride 4 (padding 2) -> LayerNorm over channels (official ``stage1_conv_embed``: keys
    ``0`` and ``2``; its ``1`` is a parameter-free token rearrange). Pads the image to a multiple of 4
    first, so the map is ``ceil(H / 4) x ceil(W / 4)``."""

    def __init__(self, in_chans: int, dim: int, device=None, dtype=None) -> None:
        dd = dict(device=device, dtype=dtype)
        super().__init__(
            nn.Conv2d(in_chans, dim, 7, 4, 2, **dd), nn.Identity(), LayerNorm2d(dim, eps=1e-5, **dd)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(pad_to_multiple(x, 4))


class MergeBlock(nn.Module):
    """Conv 3x3 stride 2 -> LayerNorm over channels (official ``Merge_Block``)."""

    def __init__(self, dim: int, dim_out: int, device=None, dtype=None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim_out, 3, 2, 1, device=device, dtype=dtype)
        self.norm = LayerNorm2d(dim_out, eps=1e-5, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


def _split_sizes(value: str | Sequence[int], stages: int, name: str) -> tuple[int, ...]:
    sizes = tuple(int(s) for s in value.split("-")) if isinstance(value, str) else tuple(value)
    if len(sizes) != stages:
        raise ValueError(f"{name} needs one entry per stage ({stages}), got {value!r}")
    return sizes


def parse_attn_types(attn_type: str, depth: Sequence[int]) -> list[list[str]]:
    """Each block's mixer (``'I'`` / ``'S'``) from the official ``attn_type`` string: one letter per stage
    (``'IISS'``); a stage letter ``'M'`` makes that stage's first ``int(attn_type[len(depth):])`` blocks
    InLine and the rest softmax (e.g. ``'IIMS3'``)."""
    stages = len(depth)
    letters, count = attn_type[:stages], attn_type[stages:]
    if len(letters) != stages or any(c not in "ISM" for c in letters) or (count and not count.isdigit()):
        raise ValueError(
            f"attn_type needs one of I / S / M per stage ({stages}), then an M count: {attn_type!r}"
        )
    if "M" in letters and not count:
        raise ValueError(f"attn_type {attn_type!r}: an 'M' stage needs the number of InLine blocks after it")
    m = int(count or 0)
    return [
        [c if c != "M" else ("I" if j < m else "S") for j in range(d)]
        for c, d in zip(letters, depth, strict=True)
    ]


class InLineCSWin(HierarchicalBackbone):
    """InLine-CSwin: conv stem (stride 4), four stages of :class:`CSWinBlock` (``merge.i``, conv 3x3-s2 +
    LayerNorm, between them), a final LayerNorm, average pool and a linear classifier.

    Args (official names): ``embed_dim`` (stage 1 width; doubled per stage), ``depth``, ``num_heads``,
    ``split_size`` (softmax stripe width per stage), ``la_split_size`` (InLine stripe width per stage,
    a tuple or the official ``'56-28-14-7'`` string), ``attn_type`` (see :func:`parse_attn_types`),
    ``img_size`` (only decides which blocks are one global window), ``mlp_ratio``, ``qkv_bias``,
    ``proj_drop_rate`` (the official ``drop_rate``: MLP dropout), ``attn_drop_rate``, ``drop_path_rate``
    (linear over all blocks); ``drop_rate`` is timm's dropout before the classifier (none officially).
    """

    module_names = ModuleNames(stem="stage1_conv_embed", downsamples="merge")

    def __init__(
        self,
        img_size: int = 224,
        embed_dim: int = 64,
        depth: Sequence[int] = (2, 4, 18, 1),
        num_heads: Sequence[int] = (2, 4, 8, 16),
        split_size: Sequence[int] = (1, 2, 7, 7),
        la_split_size: str | Sequence[int] = (56, 28, 14, 7),
        attn_type: str = "IISS",
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        device=None,
        dtype=None,
    ) -> None:
        dd = dict(device=device, dtype=dtype)
        stages = len(depth)
        if len(num_heads) != stages:
            raise ValueError(f"num_heads needs one entry per stage ({stages}), got {num_heads}")
        split_size = _split_sizes(split_size, stages, "split_size")
        la_split_size = _split_sizes(la_split_size, stages, "la_split_size")
        types = parse_attn_types(attn_type, depth)
        widths = [embed_dim * 2**i for i in range(stages)]
        reductions = [2 ** (i + 2) for i in range(stages)]
        rates = calculate_drop_path_rates(drop_path_rate, list(depth), stagewise=True)
        stage_list = []
        for i in range(stages):
            blocks = []
            for j, rate in enumerate(rates[i]):
                split = la_split_size[i] if types[i][j] == "I" else split_size[i]
                blocks.append(
                    CSWinBlock(
                        widths[i],
                        num_heads[i],
                        types[i][j],
                        split,
                        global_window=i == stages - 1 or split == img_size // reductions[i],
                        mlp_ratio=mlp_ratio,
                        qkv_bias=qkv_bias,
                        proj_drop=proj_drop_rate,
                        attn_drop=attn_drop_rate,
                        drop_path=rate,
                        **dd,
                    )
                )
            stage_list.append(Stage(*blocks))
        super().__init__(
            stem=_ConvEmbed(in_chans, embed_dim, **dd),
            downsamples=[nn.Identity()]
            + [MergeBlock(widths[i - 1], widths[i], **dd) for i in range(1, stages)],
            stages=stage_list,
            norm=LayerNorm2d(widths[-1], eps=1e-5, **dd),
            widths=widths,
            reductions=reductions,
            in_chans=in_chans,
            num_classes=num_classes,
            global_pool=global_pool,
            drop_rate=drop_rate,
            **dd,
        )
        self.img_size = img_size
        self.attn_type = attn_type
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        """The official init: truncated-normal (std .02) linears with zero bias; LayerNorms 1 / 0."""
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# ----------------------------------------------------------------------------- conversion
_RENAMES = (
    (re.compile(r"^stage(\d+)\.(\d+)\."), lambda m: f"stages.{int(m[1]) - 1}.{m[2]}."),
    (re.compile(r"^merge(\d+)\."), lambda m: f"merge.{m[1]}."),
)


def _rename(key: str) -> str:
    for pattern, new in _RENAMES:
        key, hits = pattern.subn(new, key, count=1)
        if hits:
            break
    return key


def convert_inline_cswin(state_dict: StateDict, model: nn.Module | None = None) -> StateDict:
    """An official InLine-CSwin checkpoint (its ``model`` entry; pass ``state_dict_ema`` yourself for the
    EMA weights) -> attnzoo keys: ``stage{i}.j.`` -> ``stages.{i-1}.j.``, ``merge{i}.`` -> ``merge.{i}.``.

    Keys already in attnzoo's naming pass through; keys or shapes the model lacks (another variant) are
    refused.
    """
    state_dict = detector_backbone(model_tensors(state_dict))
    if not any(_RENAMES[0][0].match(k) or _RENAMES[1][0].match(k) for k in state_dict):
        return verify_against_model(state_dict, model)  # not an official checkpoint (attnzoo's keys)
    return verify_against_model({_rename(k): v for k, v in state_dict.items()}, model)


# ----------------------------------------------------------------------------- family and variants
FAMILY = register_family(
    Family(
        name="inline_cswin",
        module=__name__,
        **INLINE_PAPER,
        converter=convert_inline_cswin,
        cfg=dict(pool_size=(7, 7), crop_pct=0.9, first_conv="stage1_conv_embed.0", classifier="head"),
        # The README's parameter counts are larger than what the official builders build.
        weights=(
            *(
                inline_weights(
                    *release, notes=(f"the official builder, like this model, has {built_m:g} M params",)
                )
                for *release, built_m in (
                    ("inline_cswin_tiny", "49fa2ecc543647c4b970", 83.2, 25, 4.3, 20.60),
                    ("inline_cswin_small", "59f4e65f776f4052b93c", 83.8, 43, 6.8, 33.03),
                    ("inline_cswin_base", "91e17121df284ae38521", 84.5, 96, 14.9, 73.41),
                )
            ),
            Weights(
                "inline_cswin_base_384",
                "untrained",
                cfg=dict(input_size=(3, 384, 384), pool_size=(12, 12), crop_pct=1.0),
                notes=(
                    "no weights: the official README lists none for B at 384 "
                    "(only cfgs/inline_cswin_b_384.yaml)",
                ),
            ),
        ),
        goldens={"inline_cswin_tiny": "inline_cswin_tiny"},
        feature_cfg=dict(feature_cls="getter", out_indices=(0, 1, 2, 3)),
        # merge.i (i > 0) opens stage i (the official merge{i} runs before stage{i+1}).
        dense=DenseLayout(
            out_indices=(0, 1, 2, 3),
            stem=r"stage1_conv_embed\.",
            stage=r"(?:merge|stages)\.(\d+)\.",
            last=r"norm\.",
        ),
    )
)

default_cfgs = FAMILY.default_cfgs()

_VARIANTS: dict[str, dict[str, Any]] = {
    "tiny": dict(embed_dim=64, depth=(2, 4, 18, 1), num_heads=(2, 4, 8, 16)),
    "small": dict(embed_dim=64, depth=(3, 6, 29, 2), num_heads=(2, 4, 8, 16)),
    "base": dict(embed_dim=96, depth=(3, 6, 29, 2), num_heads=(4, 8, 16, 32)),
    "base_384": dict(
        embed_dim=96,
        depth=(3, 6, 29, 2),
        num_heads=(4, 8, 16, 32),
        img_size=384,
        split_size=(1, 2, 12, 12),
        la_split_size=(96, 48, 24, 12),
    ),
}


def _create(variant: str, pretrained: bool, **kwargs: Any) -> InLineCSWin:
    args = dict(split_size=(1, 2, 7, 7), la_split_size=(56, 28, 14, 7), attn_type="IISS")
    return FAMILY.build(
        InLineCSWin, f"inline_cswin_{variant}", pretrained, **{**args, **_VARIANTS[variant], **kwargs}
    )


@register_model
def inline_cswin_tiny(pretrained: bool = False, **kwargs: Any) -> InLineCSWin:
    """InLine-CSwin-T: depths 2-4-18-1, widths 64-512, InLine (global) in stages 1-2, softmax stripes 7."""
    return _create("tiny", pretrained, **kwargs)


@register_model
def inline_cswin_small(pretrained: bool = False, **kwargs: Any) -> InLineCSWin:
    """InLine-CSwin-S: depths 3-6-29-2, widths 64-512."""
    return _create("small", pretrained, **kwargs)


@register_model
def inline_cswin_base(pretrained: bool = False, **kwargs: Any) -> InLineCSWin:
    """InLine-CSwin-B: depths 3-6-29-2, widths 96-768, heads 4-8-16-32."""
    return _create("base", pretrained, **kwargs)


@register_model
def inline_cswin_base_384(pretrained: bool = False, **kwargs: Any) -> InLineCSWin:
    """InLine-CSwin-B at 384 px: softmax stripes 12, InLine split sizes 96-48-24-12 (all global)."""
    return _create("base_384", pretrained, **kwargs)

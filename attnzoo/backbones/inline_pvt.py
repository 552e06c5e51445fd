"""InLine-PVT (Han et al., "Bridging the Divide: Reconsidering Softmax and Linear Attention", NeurIPS 2024,
arXiv:2412.06590): PVT v1 whose blocks mix tokens with injective linear attention
(:mod:`attnzoo.layers.inline`) instead of spatial-reduction softmax attention.

Same math and parameters as the official ``models/inline_pvt.py`` (builders ``inline_pvt_tiny``,
``inline_pvt_small``, ``inline_pvt_medium``, ``inline_pvt_large``; the README's InLine-PVT-T/S/M/L, whose
L config file is ``cfgs/inline_pvt_b.yaml``), built as ``models/build.py`` builds them for the released
configs: ``attn_type='IIII'`` and ``la_sr_ratios='1111'`` (``config.py``'s defaults), so every stage is
InLine attention on all tokens. Each stage is a patch embedding (conv, LayerNorm with eps 1e-5), a
learned absolute position embedding, and pre-norm blocks (LayerNorm eps 1e-6, attention with separate
``q`` / ``kv`` projections and the local residual, GELU MLP); no class token (the official code has it
commented out) and no final norm: the classifier averages the last stage's tokens. Official checkpoints
convert on load (:func:`convert_inline_pvt`: ``patch_embed{i}`` / ``pos_embed{i}`` / ``block{i}.j`` ->
``patch_embed.{i-1}`` / ``patch_embed.{i-1}.pos_embed`` / ``stages.{i-1}.j``).

Where this differs from the official code (identical at the official sizes, multiples of 32 px):

- Any input size: the input is zero-padded at the bottom / right to a multiple of the patch size, and
  every stage map to even size before its 2x2 patch embedding, so stage ``i`` is ``ceil(size / stride)``
  (the official convs drop the remainder rows and columns).
- Position embeddings at another grid are resampled bilinearly without antialiasing (timm's
  ``resample_abs_pos_embed``), the official ``_get_pos_embed`` rule; the official code compares every
  stage's token count with stage 1's, so its later stages always interpolate (the identity at the trained
  size) and a stage whose token count happens to equal stage 1's is not resampled (and fails).
- ``attn_type`` may put softmax spatial-reduction attention (``'S'``, the PVT v1 layer, official names
  ``q`` / ``kv`` / ``sr`` / ``norm``) in a stage, as the official class allows; no released config does.
  Its ``sr x sr`` reduction zero-pads the map to whole cells (the official conv floors).
- An InLine stage with ``la_sr_ratio > 1`` is refused: the official ``InLineAttention`` then reshapes the
  reduced keys / values to the query's token count and fails, and no released config uses it.
- Dropout: the official ``drop_rate`` (after the position embedding, attention projection and MLP) is
  ``proj_drop_rate`` here; ``drop_rate`` is timm's dropout before the classifier (0 in the official model).

InLine publishes no detection / segmentation code or results; the dense use (``features_only``, strides
4 / 8 / 16 / 32, the raw stage outputs) is attnzoo's.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import (
    DropPath,
    Mlp,
    calculate_drop_path_rates,
    register_notrace_function,
    resample_abs_pos_embed,
    trunc_normal_,
)
from timm.models import checkpoint, register_model
from torch import nn

from attnzoo.backbones._convert import StateDict, detector_backbone, model_tensors, verify_against_model
from attnzoo.backbones._family import DenseLayout, Family, register_family
from attnzoo.backbones._hierarchical import HierarchicalBackbone, ModuleNames, Stage
from attnzoo.backbones._inline import INLINE_PAPER, inline_weights
from attnzoo.layers.inline import LocalResidual, apply_local_kernels, injective_attention
from attnzoo.layers.padding import pad_to_multiple

__all__ = [
    "InLinePVT",
    "InLinePVTAttention",
    "InLinePVTBlock",
    "SpatialReductionAttention",
    "convert_inline_pvt",
]


@register_notrace_function  # built from the map size: torch.fx keeps it as one call
def stage_pos_embed(pos_embed: torch.Tensor, grid: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """A stage's ``(1, h * w, C)`` position embedding, learned on ``grid``, for a ``size`` token map:
    itself when the sizes agree, else bilinearly resampled (align_corners False, no antialias), as the
    official ``_get_pos_embed``."""
    return resample_abs_pos_embed(
        pos_embed,
        new_size=[int(size[0]), int(size[1])],
        old_size=list(grid),
        num_prefix_tokens=0,
        interpolation="bilinear",
        antialias=False,
    )


class InLinePVTAttention(nn.Module):
    """Injective linear attention over all ``N = H * W`` tokens with PVT's separate ``q`` / ``kv``
    projections, plus the local residual on ``v`` (official ``InLineAttention`` with ``sr_ratio=1``)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        proj_drop: float = 0.0,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        dd = dict(device=device, dtype=dtype)
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.q = nn.Linear(dim, dim, bias=qkv_bias, **dd)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias, **dd)
        self.proj = nn.Linear(dim, dim, **dd)
        self.proj_drop = nn.Dropout(proj_drop)
        self.residual = LocalResidual(dim, num_heads, **dd)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """``x``: ``(B, H * W, C)`` tokens of the row-major ``grid = (H, W)``."""
        b, n, c = x.shape
        k, v = self.kv(x).reshape(b, n, 2, c).unbind(2)
        q, k_, v_ = (
            t.reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2) for t in (self.q(x), k, v)
        )
        out = injective_attention(q, k_, v_, self.scale).transpose(1, 2).reshape(b, n, c)
        h, w = grid
        local = apply_local_kernels(v.transpose(1, 2).reshape(b, c, h, w), self.residual.kernels(x))
        return self.proj_drop(self.proj(out + local.flatten(2).transpose(1, 2)))


class SpatialReductionAttention(nn.Module):
    """PVT v1's softmax attention: keys / values from the map reduced by an ``sr x sr`` stride-``sr`` conv
    and a LayerNorm (eps 1e-5) when ``sr_ratio > 1`` (official ``Attention``; the map is zero-padded to
    whole cells first)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        sr_ratio: int = 1,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        dd = dict(device=device, dtype=dtype)
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.sr_ratio = sr_ratio
        self.q = nn.Linear(dim, dim, bias=qkv_bias, **dd)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias, **dd)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim, **dd)
        self.proj_drop = nn.Dropout(proj_drop)
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, sr_ratio, stride=sr_ratio, **dd)
            self.norm = nn.LayerNorm(dim, **dd)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        b, n, c = x.shape
        q = self.q(x).reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2)
        if self.sr_ratio > 1:
            h, w = grid
            reduced = self.sr(pad_to_multiple(x.transpose(1, 2).reshape(b, c, h, w), self.sr_ratio))
            x = self.norm(reduced.flatten(2).transpose(1, 2))
        k, v = self.kv(x).reshape(b, -1, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        drop = self.attn_drop.p if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, scale=self.scale)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, c)))


class InLinePVTBlock(nn.Module):
    """Pre-norm block on ``(B, N, C)`` tokens: ``x += attn(norm1(x))``, ``x += mlp(norm2(x))``
    (LayerNorm eps 1e-6, GELU MLP); ``attn_type`` ``'I'`` (InLine) or ``'S'`` (softmax)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        attn_type: str = "I",
        sr_ratio: int = 1,
        qkv_bias: bool = True,
        proj_drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6, **dd)
        if attn_type == "I":
            self.attn: nn.Module = InLinePVTAttention(dim, num_heads, qkv_bias, proj_drop, **dd)
        else:
            self.attn = SpatialReductionAttention(
                dim, num_heads, sr_ratio, qkv_bias, attn_drop, proj_drop, **dd
            )
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6, **dd)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=proj_drop, **dd)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), grid))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class TokenStage(Stage):
    """A stage's blocks on its ``(B, C, H, W)`` map, run as ``(B, H * W, C)`` tokens (the blocks need the
    grid); returns the map, so hooks and features see channels-first stage outputs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        grid = (h, w)
        x = x.flatten(2).transpose(1, 2)
        ckpt = self.grad_checkpointing and torch.is_grad_enabled()
        for block in self:
            x = checkpoint(block, x, grid) if ckpt else block(x, grid)
        return x.transpose(1, 2).reshape(b, c, h, w)


class PatchEmbed(nn.Module):
    """``p x p`` stride-``p`` conv -> LayerNorm (eps 1e-5) -> + position embedding -> dropout
    (official ``patch_embed{i}`` with ``pos_embed{i}`` / ``pos_drop{i}``); channels-first in and out.

    ``grid``: the token grid the position embedding is learned on (``img_size // stride``); the input is
    zero-padded to a multiple of ``p`` first.
    """

    def __init__(
        self,
        in_chans: int,
        dim: int,
        patch_size: int,
        grid: tuple[int, int],
        drop: float = 0.0,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.patch_size = patch_size
        self.grid = grid
        self.proj = nn.Conv2d(in_chans, dim, patch_size, stride=patch_size, **dd)
        self.norm = nn.LayerNorm(dim, **dd)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid[0] * grid[1], dim, **dd))
        self.pos_drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(pad_to_multiple(x, self.patch_size))
        b, c, h, w = x.shape
        tokens = self.norm(x.flatten(2).transpose(1, 2))
        tokens = self.pos_drop(tokens + stage_pos_embed(self.pos_embed, self.grid, (h, w)))
        return tokens.transpose(1, 2).reshape(b, c, h, w)


def _per_stage(name: str, values: str | Sequence[Any], n: int, cast: type) -> tuple[Any, ...]:
    """A per-stage argument as a tuple (the official strings ``'IIII'`` / ``'1111'`` give one character
    per stage)."""
    values = tuple(cast(v) for v in values)
    if len(values) != n:
        raise ValueError(f"{name} needs one entry per stage ({n}), got {values}")
    return values


class InLinePVT(HierarchicalBackbone):
    """InLine-PVT: four stages, each a patch embedding (stride ``patch_size``, then 2) with its own position
    embedding and a stack of pre-norm blocks; no final norm; the classifier averages the last stage.

    Args:
        img_size: the size the position embeddings are learned at (224 in every release); other input
            sizes resample them.
        attn_type: per stage ``'I'`` (InLine attention) or ``'S'`` (softmax spatial-reduction attention).
        sr_ratios: the softmax stages' key / value reduction; ``la_sr_ratios``: the InLine stages' (must be
            1: see the module docstring).
        proj_drop_rate: the official ``drop_rate`` (position-embedding, attention-projection and MLP
            dropout); ``drop_rate``: dropout before the classifier.
    """

    module_names = ModuleNames(stem=None, downsamples="patch_embed")

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 4,
        embed_dims: Sequence[int] = (64, 128, 320, 512),
        num_heads: Sequence[int] = (2, 4, 10, 16),
        mlp_ratios: Sequence[float] = (8, 8, 4, 4),
        depths: Sequence[int] = (2, 2, 2, 2),
        attn_type: str | Sequence[str] = "IIII",
        sr_ratios: str | Sequence[int] = (8, 4, 2, 1),
        la_sr_ratios: str | Sequence[int] = (1, 1, 1, 1),
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
        n = len(depths)
        embed_dims = _per_stage("embed_dims", embed_dims, n, int)
        num_heads = _per_stage("num_heads", num_heads, n, int)
        mlp_ratios = _per_stage("mlp_ratios", mlp_ratios, n, float)
        attn_type = _per_stage("attn_type", attn_type, n, str)
        sr_ratios = _per_stage("sr_ratios", sr_ratios, n, int)
        la_sr_ratios = _per_stage("la_sr_ratios", la_sr_ratios, n, int)
        if bad := [t for t in attn_type if t not in ("I", "S")]:
            raise ValueError(f"attn_type entries are 'I' (InLine) or 'S' (softmax), got {bad}")
        if bad := [
            i for i, (t, r) in enumerate(zip(attn_type, la_sr_ratios, strict=True)) if t == "I" and r != 1
        ]:
            raise ValueError(
                f"la_sr_ratios > 1 in InLine stage(s) {bad}: the official InLineAttention cannot reduce "
                "keys / values (it reshapes them to the query's token count and fails); the released "
                "configs use 1111"
            )
        img_h, img_w = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        strides = [patch_size * 2**i for i in range(n)]
        patch_embeds = [
            PatchEmbed(
                in_chans if i == 0 else embed_dims[i - 1],
                embed_dims[i],
                patch_size if i == 0 else 2,
                (img_h // strides[i], img_w // strides[i]),
                proj_drop_rate,
                **dd,
            )
            for i in range(n)
        ]
        rates = calculate_drop_path_rates(drop_path_rate, list(depths), stagewise=True)
        stages = [
            TokenStage(
                *[
                    InLinePVTBlock(
                        embed_dims[i],
                        num_heads[i],
                        mlp_ratios[i],
                        attn_type[i],
                        sr_ratios[i] if attn_type[i] == "S" else la_sr_ratios[i],
                        qkv_bias,
                        proj_drop_rate,
                        attn_drop_rate,
                        rate,
                        **dd,
                    )
                    for rate in rates[i]
                ]
            )
            for i in range(n)
        ]
        super().__init__(
            stem=None,
            downsamples=patch_embeds,
            stages=stages,
            norm=nn.Identity(),
            widths=embed_dims,
            reductions=strides,
            in_chans=in_chans,
            num_classes=num_classes,
            global_pool=global_pool,
            drop_rate=drop_rate,
            **dd,
        )
        self.attn_type = "".join(attn_type)
        for embed in patch_embeds:
            trunc_normal_(embed.pos_embed, std=0.02)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        """The official init: linears truncated-normal (std .02) with zero bias, LayerNorms 1 / 0, convs
        PyTorch's default."""
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# Official key -> attnzoo key: the per-stage attributes become the skeleton's lists.
_RENAMES = (
    (re.compile(r"^patch_embed(\d+)\."), lambda m: f"patch_embed.{int(m[1]) - 1}."),
    (re.compile(r"^pos_embed(\d+)$"), lambda m: f"patch_embed.{int(m[1]) - 1}.pos_embed"),
    (re.compile(r"^block(\d+)\.(\d+)\."), lambda m: f"stages.{int(m[1]) - 1}.{m[2]}."),
)
_OFFICIAL = re.compile(r"^(?:patch_embed\d+\.|pos_embed\d+$|block\d+\.)")
_BLOCK = re.compile(r"^stages\.(\d+)\.(\d+)\.")
_POS = re.compile(r"^patch_embed\.(\d+)\.pos_embed$")


def _rename(key: str) -> str:
    for pattern, new in _RENAMES:
        key, hits = pattern.subn(new, key, count=1)
        if hits:
            break
    return key


def _depths(keys: Sequence[str]) -> dict[int, int]:
    """Blocks per stage, from ``stages.i.j.*`` keys."""
    depths: dict[int, int] = {}
    for key in keys:
        if m := _BLOCK.match(key):
            depths[int(m[1])] = max(depths.get(int(m[1]), 0), int(m[2]) + 1)
    return depths


def _as_tuple(depths: dict[int, int]) -> tuple[int, ...]:
    return tuple(depths.get(i, 0) for i in range(max(depths, default=-1) + 1))


def _fit_pos_embeds(state_dict: StateDict, model: nn.Module) -> StateDict:
    """Resample each stage's position embedding to the grid the model was built for (a model created
    with another ``img_size``); the official checkpoints' grids are square."""
    own = model.state_dict()
    out = dict(state_dict)
    for key, value in state_dict.items():
        m = _POS.match(key)
        if not m or key not in own or value.shape == own[key].shape or value.shape[2] != own[key].shape[2]:
            continue
        side = round(value.shape[1] ** 0.5)
        if side * side != value.shape[1]:
            raise ValueError(f"{key}: {value.shape[1]} tokens are not a square grid to resample from")
        embed = model.get_submodule(f"patch_embed.{m[1]}")
        out[key] = stage_pos_embed(value, (side, side), embed.grid)
    return out


def convert_inline_pvt(state_dict: StateDict, model: nn.Module | None = None) -> StateDict:
    """An official InLine-PVT checkpoint (``main.py``'s ``{'model': ...}`` or its state dict) -> attnzoo keys.

    Position embeddings are resampled to the model's ``img_size`` grid when it differs. A checkpoint of
    another variant (other depths) or attention layout (``attn_type``) is refused. Keys already in
    attnzoo's naming pass through the same checks.
    """
    state_dict = detector_backbone(model_tensors(state_dict))
    if any(_OFFICIAL.match(k) for k in state_dict):
        state_dict = {_rename(k): v for k, v in state_dict.items()}
    if model is None:
        return state_dict
    have, want = _depths(list(state_dict)), _depths(list(model.state_dict()))
    if have and have != want:
        raise ValueError(
            f"checkpoint has depths {_as_tuple(have)}, the model {_as_tuple(want)}: a checkpoint of another "
            "InLine-PVT variant"
        )
    return verify_against_model(_fit_pos_embeds(state_dict, model), model)


FAMILY = register_family(
    Family(
        name="inline_pvt",
        module=__name__,
        **INLINE_PAPER,
        converter=convert_inline_pvt,
        cfg=dict(pool_size=(7, 7), first_conv="patch_embed.0.proj", classifier="head"),
        # The official README's InLine-PVT-T / S / M / L (L's config is cfgs/inline_pvt_b.yaml).
        weights=tuple(
            inline_weights(model, share, top1, params_m, gflops)
            for model, share, top1, params_m, gflops in (
                ("inline_pvt_tiny", "90ac52b1555b401eb5e6", 78.2, 12.0, 2.0),
                ("inline_pvt_small", "1ab953b2479d433080a3", 82.0, 21.6, 3.9),
                ("inline_pvt_medium", "a72aec31e6084bc0a280", 83.2, 37.6, 6.9),
                ("inline_pvt_large", "efd91318ba964f01b288", 83.6, 50.2, 10.2),
            )
        ),
        goldens={"inline_pvt_tiny": "inline_pvt_tiny"},
        feature_cfg=dict(feature_cls="getter", out_indices=(0, 1, 2, 3)),
        # patch_embed.0 (with its position embedding) is the stem; patch_embed.i (i > 0) opens stage i.
        # No official dense form: InLine publishes no detection / segmentation backbone.
        dense=DenseLayout(
            out_indices=(0, 1, 2, 3),
            stem=r"patch_embed\.0\.",
            stage=r"(?:patch_embed|stages)\.(\d+)\.",
            last=r"norm\.",
        ),
    )
)


default_cfgs = FAMILY.default_cfgs()

_DEPTHS = {
    "inline_pvt_tiny": (2, 2, 2, 2),
    "inline_pvt_small": (3, 4, 6, 3),
    "inline_pvt_medium": (3, 4, 18, 3),
    "inline_pvt_large": (3, 8, 27, 3),
}


def _create(variant: str, pretrained: bool, **kwargs: Any) -> InLinePVT:
    # Every official builder: widths 64-128-320-512, heads 2-4-10-16, MLP ratios 8-8-4-4, q / kv biases.
    return FAMILY.build(InLinePVT, variant, pretrained, **{"depths": _DEPTHS[variant], **kwargs})


@register_model
def inline_pvt_tiny(pretrained: bool = False, **kwargs: Any) -> InLinePVT:
    """InLine-PVT-T: depths 2-2-2-2, widths 64-128-320-512, InLine attention in every stage."""
    return _create("inline_pvt_tiny", pretrained, **kwargs)


@register_model
def inline_pvt_small(pretrained: bool = False, **kwargs: Any) -> InLinePVT:
    """InLine-PVT-S: depths 3-4-6-3."""
    return _create("inline_pvt_small", pretrained, **kwargs)


@register_model
def inline_pvt_medium(pretrained: bool = False, **kwargs: Any) -> InLinePVT:
    """InLine-PVT-M: depths 3-4-18-3."""
    return _create("inline_pvt_medium", pretrained, **kwargs)


@register_model
def inline_pvt_large(pretrained: bool = False, **kwargs: Any) -> InLinePVT:
    """InLine-PVT-L: depths 3-8-27-3 (the README's L; its config file is cfgs/inline_pvt_b.yaml)."""
    return _create("inline_pvt_large", pretrained, **kwargs)

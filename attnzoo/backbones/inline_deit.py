"""InLine-DeiT: DeiT with injective linear attention (Han et al., "Bridging the Divide: Reconsidering
Softmax and Linear Attention", NeurIPS 2024, arXiv:2412.06590).

The official model (LeapLabTHU/InLine ``models/inline_deit.py``) is timm 0.4's DeiT-layout
``VisionTransformer`` (class token, learned position embedding with a class slot, pre-norm blocks,
LayerNorm eps 1e-6, head on the class token) whose every block runs ``InLineAttention``: injective
linear attention over all ``N = 1 + H * W`` tokens (the class token counts in ``N``) plus a local
residual on the patch tokens, a per-image 3x3 depthwise convolution of ``v`` whose kernels are predicted
from the mean token (:mod:`attnzoo.layers.inline`). Its state-dict keys are timm's ViT keys plus
``blocks.i.attn.residual.{0,2}``, so here the model is attnzoo's ViT skeleton
(:mod:`attnzoo.backbones._vit`) with :class:`InLineDeiTAttention`, and official checkpoints load as
they are (the converter checks them and resamples ``pos_embed`` for another image size).

Variants, as the official builders and ``cfgs/inline_deit_{t,s,b}.yaml`` define them (the builders'
docstrings are DeiT's, copied unchanged, and do not describe them): ``inline_deit_tiny`` 192 wide,
12 blocks, 6 heads, 224 px; ``inline_deit_small`` 320 / 12 / 10 at 288 px; ``inline_deit_base``
384 / 12 / 12 at 448 px. Evaluation follows the official ``data/build.py``: resize the image to
``(256 / 224) * size`` on both sides (aspect not kept), centre-crop ``size``, bicubic, ImageNet mean
and std: timm's ``crop_mode='squash'`` with ``crop_pct=0.875`` gives the same sizes.

Where the official code would fail: it takes the patch grid as ``h = w = int(sqrt(N))`` and adds a
fixed-size position embedding, so only the training resolution (a square grid) runs. Here any input
runs: the image is zero-padded to whole patches, ``pos_embed`` is resampled (timm's bicubic
``resample_abs_pos_embed``) to the patch grid, and the local residual convolves the real ``H x W`` grid
(zero padding 1, as the official convolution pads). At the training size nothing changes.

How the attention gets the grid: the model writes the patch grid of the tokens about to run into every
block's attention (``attn.grid``) in ``_pos_embed``, before the blocks run (as KArAt does), so timm's
own ``forward_features``, ``forward_intermediates``, checkpointing and torch.fx tracing are used
unchanged. A consequence: a checkpointed forward recomputes its blocks during backward with the grid
of the model's *latest* forward; a second forward with another grid before that backward is caught
when its token count differs (a clear error), not when only the grid's orientation does (``14 x 16``
then ``16 x 14``). ``attn_drop`` is accepted and unused (the official layer defines it and never uses
it: there is no attention matrix to drop from); ``patch_drop_rate`` is refused (the residual needs the
whole grid).

Licence: the official repository has no licence file; its weights (TsinghuaCloud) are linked, never
re-hosted.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from timm.layers import register_notrace_function
from timm.models import register_model
from torch import nn

from attnzoo.backbones._convert import StateDict, fit_pos_embed, model_tensors, verify_against_model
from attnzoo.backbones._family import DenseLayout, Family, register_family
from attnzoo.backbones._inline import INLINE_PAPER, inline_weights
from attnzoo.backbones._vit import AttnZooViT
from attnzoo.layers.checks import check_no_mask
from attnzoo.layers.inline import InjectiveLinearAttention

__all__ = ["InLineDeiT", "InLineDeiTAttention", "convert_inline_deit", "token_grid"]


# torch.fx: branches on the traced token count, so a trace records it as one call (its result is used,
# so the call stays in the graph).
@register_notrace_function
def token_grid(num_tokens: int, grid: tuple[int, int] | None, num_prefix_tokens: int) -> tuple[int, int]:
    """The patch grid of ``num_tokens`` tokens (``num_prefix_tokens`` of them class / register tokens):
    ``grid`` checked to hold the patch tokens, or, without one, the square grid the official code
    assumes."""
    patches = num_tokens - num_prefix_tokens
    if grid is None:
        side = math.isqrt(max(patches, 0))
        if side * side != patches:
            raise ValueError(
                f"InLine attention got {patches} patch tokens, which form no square grid; set "
                "attn.grid = (rows, cols) (InLineDeiT does so for every input)"
            )
        return side, side
    h, w = grid
    if h * w != patches:
        raise ValueError(
            f"InLine attention's grid {h}x{w} does not hold its {patches} patch tokens: the grid is the "
            "model's latest forward's (a checkpointed forward must run backward before another input size)"
        )
    return h, w


class InLineDeiTAttention(InjectiveLinearAttention):
    """InLine attention (official ``InLineAttention``, same keys: ``qkv``, ``proj``, ``residual``) with
    timm ``Attention``'s constructor and ``forward(x, attn_mask=None, is_causal=False)``, so timm's
    ``Block(attn_layer=...)`` builds and calls it.

    The patch grid and the number of prefix tokens are attributes, set by :class:`InLineDeiT`:
    ``grid`` (``None``: a square grid, as the official layer assumes) and ``num_prefix_tokens``
    (default 1, the class token). timm arguments the official layer does not have (``qk_norm``,
    ``scale_norm``, ``proj_bias=False``) are refused; ``attn_drop`` and ``norm_layer`` are unused.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = True,
        qk_norm: bool = False,
        scale_norm: bool = False,
        proj_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        norm_layer: type[nn.Module] | None = None,
        device=None,
        dtype=None,
    ) -> None:
        if qk_norm or scale_norm or not proj_bias:
            raise ValueError("InLine attention has no q/k norm, no attention norm and a biased proj")
        super().__init__(dim, num_heads, qkv_bias=qkv_bias, proj_drop=proj_drop, device=device, dtype=dtype)
        self.num_prefix_tokens = 1
        self.grid: tuple[int, int] | None = None

    def forward(  # type: ignore[override]  # timm's Attention call, not the base layer's
        self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False
    ) -> torch.Tensor:
        check_no_mask(attn_mask, is_causal, "InLine attention")
        grid = token_grid(x.shape[1], self.grid, self.num_prefix_tokens)
        return super().forward(x, grid, self.num_prefix_tokens)


class InLineDeiT(AttnZooViT):
    """attnzoo's ViT skeleton (timm ``VisionTransformer``) with InLine attention in every block.

    Takes timm's ``VisionTransformer`` arguments (DeiT defaults: class token, token pooling, qkv bias,
    LayerNorm eps 1e-6, MLP ratio 4); the attention layer is fixed and ``patch_drop_rate`` must be 0.
    """

    def __init__(self, **kwargs: Any) -> None:
        if "attn_layer" in kwargs or "block_fn" in kwargs:
            raise ValueError("InLineDeiT chooses its own block and attention layer")
        if kwargs.get("patch_drop_rate"):
            raise ValueError("InLine's local residual needs the whole patch grid: patch_drop_rate must be 0")
        super().__init__(attn_layer=InLineDeiTAttention, **kwargs)
        for blk in self.blocks:
            blk.attn.num_prefix_tokens = self.num_prefix_tokens

    def _pos_embed(self, x: torch.Tensor) -> torch.Tensor:
        """timm's, after telling every block's attention the patch grid of the tokens about to run."""
        grid = (x.shape[1], x.shape[2]) if self.dynamic_img_size else self.patch_embed.grid_size
        for blk in self.blocks:
            blk.attn.grid = grid
        return super()._pos_embed(x)


# ----------------------------------------------------------------------------- conversion
def _geometry(state_dict: StateDict) -> tuple[int, int, int] | None:
    """(width, blocks, heads) of an InLine-DeiT state dict, or None where it lacks the keys to tell."""
    residual = state_dict.get("blocks.0.attn.residual.0.weight")  # Conv1d(C, C, 1, groups=heads)
    if residual is None or residual.ndim != 3 or residual.shape[1] == 0:
        return None
    depth = len({k.split(".")[1] for k in state_dict if k.startswith("blocks.")})
    return residual.shape[0], depth, residual.shape[0] // residual.shape[1]


# variant -> (embed_dim, num_heads, img_size): the official builders (patch 16, 12 blocks) and
# cfgs/inline_deit_{t,s,b}.yaml (DATA.IMG_SIZE).
_GEOMETRY = {
    "inline_deit_tiny": (192, 6, 224),
    "inline_deit_small": (320, 10, 288),
    "inline_deit_base": (384, 12, 448),
}
_VARIANTS = {(width, 12, heads): name for name, (width, heads, _) in _GEOMETRY.items()}


def convert_inline_deit(state_dict: StateDict, model: nn.Module | None = None) -> StateDict:
    """Official InLine-DeiT checkpoint (``{'model': ...}`` or bare) -> attnzoo's keys, which are the same.

    ``pos_embed`` is resampled when the model was built for another image size; a checkpoint of
    another width, depth or head count is refused naming what it is, and anything else that does not
    fit the model by :func:`~attnzoo.backbones._convert.verify_against_model`.
    """
    out = model_tensors(state_dict)
    if isinstance(model, InLineDeiT):
        have = _geometry(out)
        want = _geometry(model.state_dict())
        if have is not None and have != want:

            def describe(geometry: tuple[int, int, int]) -> str:
                width, depth, heads = geometry
                name = _VARIANTS.get(geometry)
                return f"{width} wide, {depth} blocks, {heads} heads" + (f" ({name})" if name else "")

            raise ValueError(
                f"checkpoint is an InLine-DeiT {describe(have)}, the model {describe(want)}: "
                "create the model the checkpoint belongs to"
            )
        out = fit_pos_embed(
            out, model, num_prefix_tokens=0 if model.no_embed_class else model.num_prefix_tokens
        )
    return verify_against_model(out, model)


# ----------------------------------------------------------------------------- registration
FAMILY = register_family(
    Family(
        name="inline_deit",
        module=__name__,
        **INLINE_PAPER,
        converter=convert_inline_deit,
        # Official eval (data/build.py): Resize((256 / 224 * s,) * 2) then CenterCrop(s), bicubic,
        # ImageNet mean / std (timm's defaults).
        cfg=dict(crop_pct=0.875, crop_mode="squash", first_conv="patch_embed.proj", classifier="head"),
        # Each tag is evaluated at its variant's training size (_GEOMETRY).
        weights=tuple(
            inline_weights(model, share, top1, params_m, gflops, cfg=dict(input_size=(3, size, size)))
            for model, share, top1, params_m, gflops in (
                ("inline_deit_tiny", "1d6b8191ad6d4114b291", 74.5, 6.5, 1.1),
                ("inline_deit_small", "2f3898b07e9247f3beb3", 80.2, 16.7, 5.0),
                ("inline_deit_base", "10bdd726d4b0435eb34e", 82.3, 23.8, 17.2),
            )
            for size in (_GEOMETRY[model][2],)
        ),
        goldens={"inline_deit_tiny": "inline_deit_tiny"},
        feature_cfg=dict(feature_cls="getter", out_indices=3),
        dense=DenseLayout.plain_vit(),
    )
)


default_cfgs = FAMILY.default_cfgs()


def _create(variant: str, pretrained: bool, **kwargs: Any) -> InLineDeiT:
    """The official builders: patch 16, 12 blocks; width, heads and training size per variant."""
    embed_dim, num_heads, img_size = _GEOMETRY[variant]
    args = dict(img_size=img_size, patch_size=16, embed_dim=embed_dim, depth=12, num_heads=num_heads)
    return FAMILY.build(InLineDeiT, variant, pretrained, **{**args, **kwargs})


@register_model
def inline_deit_tiny(pretrained: bool = False, **kwargs: Any) -> InLineDeiT:
    """InLine-DeiT-T: 192 wide, 12 blocks, 6 heads, 224 px (official 74.5 top-1, 6.5M)."""
    return _create("inline_deit_tiny", pretrained, **kwargs)


@register_model
def inline_deit_small(pretrained: bool = False, **kwargs: Any) -> InLineDeiT:
    """InLine-DeiT-S: 320 wide, 12 blocks, 10 heads, 288 px (official 80.2 top-1, 16.7M)."""
    return _create("inline_deit_small", pretrained, **kwargs)


@register_model
def inline_deit_base(pretrained: bool = False, **kwargs: Any) -> InLineDeiT:
    """InLine-DeiT-B: 384 wide, 12 blocks, 12 heads, 448 px (official 82.3 top-1, 23.8M)."""
    return _create("inline_deit_base", pretrained, **kwargs)

"""InfViT: Vision Transformers with Infinite Self-Attention (Roffo et al., arXiv:2603.00175).

The official repository (giorgioroffo/infinite-self-attention, MIT) ships an attention module and an
example ``ImageClassifier``: conv patch embedding, class token + learned position embedding, pre-norm
blocks (LayerNorm eps 1e-5, GELU MLP), a final LayerNorm and a head on the class token. That layout
is exactly timm's ``VisionTransformer`` with ``attn_layer`` swapped, so InfViT *is* one: timm's
features, checkpointing, pooling and intermediates come with it, and the official keys map by
:func:`convert_infvit`. Beyond the official builder: any input size (images are padded to whole
patches and the position embedding resampled to the patch grid; at the training size nothing
changes) and a trainable, compile-friendly ``rho``. No weights were released for any variant.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import LayerNorm
from timm.models import register_model
from timm.models.vision_transformer import VisionTransformer

from attnzoo.backbones._checks import check_images
from attnzoo.backbones._convert import StateDict, fit_pos_embed, verify_against_model
from attnzoo.backbones._family import Family, register_family
from attnzoo.layers.infinite_attention import InfiniteSelfAttention

__all__ = ["InfViT", "convert_infvit"]


class PureInfiniteSelfAttention(InfiniteSelfAttention):
    """``InfiniteSelfAttention(mode='pure')`` as a class (timm's Block wants a class, not a partial)."""

    def __init__(self, dim: int, **kwargs: Any) -> None:
        super().__init__(dim, mode="pure", **kwargs)


class LinearInfiniteSelfAttention(InfiniteSelfAttention):
    """``InfiniteSelfAttention(mode='linear')`` as a class."""

    def __init__(self, dim: int, **kwargs: Any) -> None:
        super().__init__(dim, mode="linear", **kwargs)


_ATTN = {"pure": PureInfiniteSelfAttention, "linear": LinearInfiniteSelfAttention}


class InfViT(VisionTransformer):
    """timm ``VisionTransformer`` whose blocks use Infinite Self-Attention.

    ``mode``: ``'pure'`` (Frobenius-normalised relu attention) or ``'linear'`` (pooled, O(N)).
    ``rho_init``: initial ``sigmoid(rho_logit)`` of every layer (the official builder uses 0.9).
    Other arguments are timm's; the defaults differ only where the official builder does: LayerNorm
    eps 1e-5, qkv bias, and dynamic image size / padding (so any input size works).
    """

    def __init__(self, mode: str = "pure", rho_init: float = 0.9, **kwargs: Any) -> None:
        if mode not in _ATTN:
            raise ValueError(f"mode must be 'pure' or 'linear', got {mode!r}")
        if "attn_layer" in kwargs:
            raise ValueError("InfViT chooses its attention layer from `mode`")
        kwargs.setdefault("norm_layer", partial(LayerNorm, eps=1e-5))
        kwargs.setdefault("qkv_bias", True)
        kwargs.setdefault("dynamic_img_size", True)
        kwargs.setdefault("dynamic_img_pad", True)
        super().__init__(attn_layer=_ATTN[mode], **kwargs)
        self.mode = mode
        logit = math.log(rho_init / (1.0 - rho_init))
        with torch.no_grad():
            for blk in self.blocks:
                blk.attn.rho_logit.fill_(logit)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token"} & {n for n, _ in self.named_parameters()}

    def forward_features(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        check_images(x, self.in_chans, "InfViT")
        return super().forward_features(x, *args, **kwargs)

    def forward_intermediates(self, x: torch.Tensor, *args: Any, **kwargs: Any):
        """timm's ``forward_intermediates``; maps are ``(B, C, ceil(H / 16), ceil(W / 16))``."""
        check_images(x, self.in_chans, "InfViT")
        return super().forward_intermediates(x, *args, **kwargs)


# ----------------------------------------------------------------------------- conversion
_BLOCK_RENAMES = {
    "attn.out_proj.": "attn.proj.",
    "attn.rho_logit": "attn.rho_logit",
    "norm1.": "norm1.",
    "norm2.": "norm2.",
    "ff.0.": "mlp.fc1.",
    "ff.3.": "mlp.fc2.",
}


def convert_infvit(state_dict: StateDict, model: torch.nn.Module | None = None) -> StateDict:
    """Official ``ImageClassifier`` keys -> InfViT keys (attnzoo / timm checkpoints pass through).

    ``encoder.layers.{i}.attn.{q,k,v}_proj`` are concatenated into ``blocks.{i}.attn.qkv``,
    ``out_proj`` -> ``proj``, ``ff.0`` / ``ff.3`` -> ``mlp.fc1`` / ``mlp.fc2``, ``encoder.norm`` ->
    ``norm``, ``patch_embed`` -> ``patch_embed.proj``. ``pos_embed`` is resampled when the model was
    built for another image size.
    """
    if any(k.startswith("encoder.layers.") for k in state_dict):
        out: StateDict = {}
        qkv: dict[str, dict[str, torch.Tensor]] = {}
        for key, value in state_dict.items():
            if key.startswith("patch_embed."):
                out["patch_embed.proj." + key.removeprefix("patch_embed.")] = value
            elif key.startswith("encoder.norm."):
                out["norm." + key.removeprefix("encoder.norm.")] = value
            elif key.startswith("encoder.layers."):
                idx, rest = key.removeprefix("encoder.layers.").split(".", 1)
                prefix = f"blocks.{idx}."
                if rest.startswith(("attn.q_proj.", "attn.k_proj.", "attn.v_proj.")):
                    which, leaf = rest.removeprefix("attn.").split(".", 1)
                    qkv.setdefault(prefix + "attn.qkv." + leaf, {})[which[0]] = value
                    continue
                for old, new in _BLOCK_RENAMES.items():
                    if rest.startswith(old):
                        out[prefix + new + rest.removeprefix(old)] = value
                        break
                else:
                    raise ValueError(f"unexpected official InfSA key {key!r}")
            else:  # cls_token, pos_embed, head.*
                out[key] = value
        for key, parts in qkv.items():
            if set(parts) != {"q", "k", "v"}:
                raise ValueError(f"{key}: need q_proj, k_proj and v_proj, got {sorted(parts)}")
            out[key] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    else:
        out = dict(state_dict)
    if isinstance(model, VisionTransformer):
        prefix = 0 if model.no_embed_class else model.num_prefix_tokens
        out = fit_pos_embed(out, model, num_prefix_tokens=prefix)
    return verify_against_model(out, model)


# ----------------------------------------------------------------------------- registration
FAMILY = register_family(
    Family(
        name="infvit",
        module=__name__,
        paper="Infinite Self-Attention",
        paper_ids="arXiv:2603.00175",
        repo="https://github.com/giorgioroffo/infinite-self-attention",
        license="mit",
        converter=convert_infvit,
        cfg=dict(
            url="",
            notes=("no weights released: the official repository ships code only (tag 'untrained')",),
            num_classes=1000,
            input_size=(3, 224, 224),
            pool_size=None,
            crop_pct=0.9,
            interpolation="bicubic",
            mean=IMAGENET_DEFAULT_MEAN,
            std=IMAGENET_DEFAULT_STD,
            fixed_input_size=False,
            first_conv="patch_embed.proj",
            classifier="head",
        ),
        goldens={"infvit_pure_4l": "infvit_pure_4l", "infvit_linear_4l": "infvit_linear_4l"},
        feature_cfg=dict(feature_cls="getter", out_indices=3),
    )
)

_MODELS = [
    f"infvit_{mode}_{geo}"
    for geo in ("4l", "tiny_patch16_224", "small_patch16_224", "base_patch16_224")
    for mode in ("pure", "linear")
]
default_cfgs = FAMILY.default_cfgs({f"{name}.untrained": {} for name in _MODELS})


def _create(variant: str, pretrained: bool, model_args: dict[str, Any], **kwargs: Any) -> InfViT:
    return FAMILY.build(InfViT, variant, pretrained, **{"patch_size": 16, **model_args, **kwargs})


@register_model
def infvit_pure_4l(pretrained: bool = False, **kwargs: Any) -> InfViT:
    """InfViT, pure InfSA, the paper's ViT-L/16 geometry: 4 blocks, 1024 wide, 16 heads (no weights)."""
    model_args = dict(mode="pure", embed_dim=1024, depth=4, num_heads=16)
    return _create("infvit_pure_4l", pretrained, model_args, **kwargs)


@register_model
def infvit_linear_4l(pretrained: bool = False, **kwargs: Any) -> InfViT:
    """InfViT, linear InfSA, the paper's ViT-L/16 geometry: 4 blocks, 1024 wide, 16 heads (no weights)."""
    model_args = dict(mode="linear", embed_dim=1024, depth=4, num_heads=16)
    return _create("infvit_linear_4l", pretrained, model_args, **kwargs)


@register_model
def infvit_pure_tiny_patch16_224(pretrained: bool = False, **kwargs: Any) -> InfViT:
    """InfViT, pure InfSA, ViT-Ti/16 geometry: 12 blocks, 192 wide, 3 heads (no weights)."""
    model_args = dict(mode="pure", embed_dim=192, depth=12, num_heads=3)
    return _create("infvit_pure_tiny_patch16_224", pretrained, model_args, **kwargs)


@register_model
def infvit_linear_tiny_patch16_224(pretrained: bool = False, **kwargs: Any) -> InfViT:
    """InfViT, linear InfSA, ViT-Ti/16 geometry: 12 blocks, 192 wide, 3 heads (no weights)."""
    model_args = dict(mode="linear", embed_dim=192, depth=12, num_heads=3)
    return _create("infvit_linear_tiny_patch16_224", pretrained, model_args, **kwargs)


@register_model
def infvit_pure_small_patch16_224(pretrained: bool = False, **kwargs: Any) -> InfViT:
    """InfViT, pure InfSA, ViT-S/16 geometry: 12 blocks, 384 wide, 6 heads (no weights)."""
    model_args = dict(mode="pure", embed_dim=384, depth=12, num_heads=6)
    return _create("infvit_pure_small_patch16_224", pretrained, model_args, **kwargs)


@register_model
def infvit_linear_small_patch16_224(pretrained: bool = False, **kwargs: Any) -> InfViT:
    """InfViT, linear InfSA, ViT-S/16 geometry: 12 blocks, 384 wide, 6 heads (no weights)."""
    model_args = dict(mode="linear", embed_dim=384, depth=12, num_heads=6)
    return _create("infvit_linear_small_patch16_224", pretrained, model_args, **kwargs)


@register_model
def infvit_pure_base_patch16_224(pretrained: bool = False, **kwargs: Any) -> InfViT:
    """InfViT, pure InfSA, ViT-B/16 geometry: 12 blocks, 768 wide, 12 heads (no weights)."""
    model_args = dict(mode="pure", embed_dim=768, depth=12, num_heads=12)
    return _create("infvit_pure_base_patch16_224", pretrained, model_args, **kwargs)


@register_model
def infvit_linear_base_patch16_224(pretrained: bool = False, **kwargs: Any) -> InfViT:
    """InfViT, linear InfSA, ViT-B/16 geometry: 12 blocks, 768 wide, 12 heads (no weights)."""
    model_args = dict(mode="linear", embed_dim=768, depth=12, num_heads=12)
    return _create("infvit_linear_base_patch16_224", pretrained, model_args, **kwargs)

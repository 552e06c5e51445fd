"""InfViT: Vision Transformers with Infinite Self-Attention (Roffo et al., arXiv:2603.00175).

The official repository (giorgioroffo/infinite-self-attention, MIT) ships an attention module and an
example ``ImageClassifier``: conv patch embedding, class token + learned position embedding, pre-norm
blocks (LayerNorm eps 1e-5, GELU MLP), a final LayerNorm and a head on the class token. That layout
is exactly timm's ``VisionTransformer`` with ``attn_layer`` swapped, so InfViT is attnzoo's ViT skeleton
(:mod:`attnzoo.backbones._vit`) with InfSA: timm's features, checkpointing, pooling and intermediates
come with it, and the official keys map by :func:`convert_infvit`. Beyond the official builder: any
input size (images are padded to whole patches and the position embedding resampled to the patch grid;
at the training size nothing changes) and a trainable, compile-friendly ``rho``. No weights were
released for any variant.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import torch
from timm.layers import LayerNorm
from timm.models import register_model
from timm.models.vision_transformer import VisionTransformer

from attnzoo.backbones._convert import StateDict, fit_pos_embed, verify_against_model
from attnzoo.backbones._family import DenseLayout, Family, Weights, register_family
from attnzoo.backbones._vit import AttnZooViT
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


class InfViT(AttnZooViT):
    """attnzoo's ViT skeleton (timm ``VisionTransformer``) whose blocks use Infinite Self-Attention.

    ``mode``: ``'pure'`` (Frobenius-normalised relu attention) or ``'linear'`` (pooled, O(N)).
    ``rho_init``: initial ``sigmoid(rho_logit)`` of every layer (the official builder uses 0.9).
    Other arguments are timm's; the defaults differ only where the official builder does (LayerNorm
    eps 1e-5) and where the skeleton does (any input size).
    """

    def __init__(self, mode: str = "pure", rho_init: float = 0.9, **kwargs: Any) -> None:
        if mode not in _ATTN:
            raise ValueError(f"mode must be 'pure' or 'linear', got {mode!r}")
        if "attn_layer" in kwargs:
            raise ValueError("InfViT chooses its attention layer from `mode`")
        kwargs.setdefault("norm_layer", partial(LayerNorm, eps=1e-5))
        super().__init__(attn_layer=_ATTN[mode], **kwargs)
        self.mode = mode
        logit = math.log(rho_init / (1.0 - rho_init))
        with torch.no_grad():
            for blk in self.blocks:
                blk.attn.rho_logit.fill_(logit)


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
# geometry -> (embed_dim, depth, num_heads); the 4-block models are the paper's ViT-L/16 geometry.
_GEOMETRY = {
    "4l": (1024, 4, 16),
    "tiny_patch16_224": (192, 12, 3),
    "small_patch16_224": (384, 12, 6),
    "base_patch16_224": (768, 12, 12),
}

FAMILY = register_family(
    Family(
        name="infvit",
        module=__name__,
        paper="Infinite Self-Attention",
        paper_ids="arXiv:2603.00175",
        repo="https://github.com/giorgioroffo/infinite-self-attention",
        license="mit",
        citation="""@article{roffo2026infsa,
  title={Self-Attention And Beyond the Infinite: Towards Linear Transformers with Infinite Self-Attention},
  author={Roffo, Giorgio and Palmer, Luke},
  journal={arXiv preprint arXiv:2603.00175},
  year={2026}
}""",
        converter=convert_infvit,
        cfg=dict(
            crop_pct=0.9,
            first_conv="patch_embed.proj",
            classifier="head",
        ),
        weights=tuple(
            Weights(
                f"infvit_{mode}_{geometry}",
                "untrained",
                # The README's table gives the 4-block models only.
                params_m={"pure_4l": 57.7, "linear_4l": 53.5}.get(f"{mode}_{geometry}"),
                notes=("no weights released: the official repository ships code only",),
            )
            for geometry in _GEOMETRY
            for mode in ("pure", "linear")
        ),
        goldens={"infvit_pure_4l": "infvit_pure_4l", "infvit_linear_4l": "infvit_linear_4l"},
        feature_cfg=dict(feature_cls="getter", out_indices=3),
        dense=DenseLayout.plain_vit(),
    )
)

default_cfgs = FAMILY.default_cfgs()


def _create(variant: str, pretrained: bool, **kwargs: Any) -> InfViT:
    """``infvit_<mode>_<geometry>``: the mode and the geometry come from the name."""
    mode, geometry = variant.removeprefix("infvit_").split("_", 1)
    embed_dim, depth, num_heads = _GEOMETRY[geometry]
    model_args = dict(mode=mode, patch_size=16, embed_dim=embed_dim, depth=depth, num_heads=num_heads)
    return FAMILY.build(InfViT, variant, pretrained, **{**model_args, **kwargs})


@register_model
def infvit_pure_4l(pretrained: bool = False, **kwargs: Any) -> InfViT:
    """InfViT with pure InfSA, the paper's 4-block ViT-L/16 geometry (no weights released)."""
    return _create("infvit_pure_4l", pretrained, **kwargs)


@register_model
def infvit_linear_4l(pretrained: bool = False, **kwargs: Any) -> InfViT:
    """InfViT with linear InfSA, the paper's 4-block ViT-L/16 geometry (no weights released)."""
    return _create("infvit_linear_4l", pretrained, **kwargs)


@register_model
def infvit_pure_tiny_patch16_224(pretrained: bool = False, **kwargs: Any) -> InfViT:
    """InfViT with pure InfSA, ViT-Ti/16 geometry (no weights released)."""
    return _create("infvit_pure_tiny_patch16_224", pretrained, **kwargs)


@register_model
def infvit_linear_tiny_patch16_224(pretrained: bool = False, **kwargs: Any) -> InfViT:
    """InfViT with linear InfSA, ViT-Ti/16 geometry (no weights released)."""
    return _create("infvit_linear_tiny_patch16_224", pretrained, **kwargs)


@register_model
def infvit_pure_small_patch16_224(pretrained: bool = False, **kwargs: Any) -> InfViT:
    """InfViT with pure InfSA, ViT-S/16 geometry (no weights released)."""
    return _create("infvit_pure_small_patch16_224", pretrained, **kwargs)


@register_model
def infvit_linear_small_patch16_224(pretrained: bool = False, **kwargs: Any) -> InfViT:
    """InfViT with linear InfSA, ViT-S/16 geometry (no weights released)."""
    return _create("infvit_linear_small_patch16_224", pretrained, **kwargs)


@register_model
def infvit_pure_base_patch16_224(pretrained: bool = False, **kwargs: Any) -> InfViT:
    """InfViT with pure InfSA, ViT-B/16 geometry (no weights released)."""
    return _create("infvit_pure_base_patch16_224", pretrained, **kwargs)


@register_model
def infvit_linear_base_patch16_224(pretrained: bool = False, **kwargs: Any) -> InfViT:
    """InfViT with linear InfSA, ViT-B/16 geometry (no weights released)."""
    return _create("infvit_linear_base_patch16_224", pretrained, **kwargs)

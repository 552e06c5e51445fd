"""KArAt: ViTs with Fourier Kolmogorov-Arnold attention (Maity et al., "Kolmogorov-Arnold Attention: Is
Learnable Attention Better For Vision Transformers?", arXiv:2503.10632).

The paper swaps the softmax of a DeiT-style timm ViT (Ti 192/12/3, S 384/12/6, B 768/12/12, patch 16,
224 px, so N = 197 tokens) for a learnable Fourier-KAN row operator (see
:mod:`attnzoo.layers.fourier_karat`), with ``r = 12`` and grid size ``G``, shared either per block
(``B``, blockwise) or by all blocks (``U``, universal). Model names: ``karat_vit_<size>_g<G><b|u>``.
Everything else is timm's ``VisionTransformer`` through attnzoo's skeleton (:mod:`attnzoo.backbones._vit`:
any input size, the operators' token axis resampled like the position embedding).

Variants: the paper's headline results (its Table 1 and the official README) are ViT-Ti + G3B / G3U,
ViT-S + G3B / G3U and ViT-B + G1B / G1U; its full comparison covers G1 and G3, blockwise and universal,
on each size, which is what is registered here (12 models). Parameter counts at the paper's setting
(10 classes, 224 px) are ``(2G + 3) r N`` per operator and head on top of the ViT; checked against the
two published counts we could read (Ti + G3B 6.29M, Ti + G3U 5.59M), the other ten follow the same
formula unverified. The official code (MaitySubhajit/KArAt, CC BY-NC-SA 4.0) was not
available to us and no weights were released: the models are tagged ``untrained``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from timm.models import register_model
from timm.models.vision_transformer import VisionTransformer

from attnzoo.backbones._convert import StateDict, fit_pos_embed, verify_against_model
from attnzoo.backbones._family import DenseLayout, Family, Weights, register_family
from attnzoo.backbones._vit import AttnZooViT
from attnzoo.layers.fourier_karat import SHARING, FourierKArAtAttention, FourierOperator
from attnzoo.layers.token_tables import resample_tokens

__all__ = ["KArAtViT", "convert_karat"]


class KArAtViT(AttnZooViT):
    """attnzoo's ViT skeleton (timm ``VisionTransformer``) with Fourier-KArAt attention in every block.

    ``grid`` (G) and ``rank`` (r): the operator's Fourier grid size and rank (the paper: r = 12, G 1 or
    3). ``sharing``: ``'blockwise'`` (one operator per block, ``blocks.i.attn.karat``) or
    ``'universal'`` (one for the model, ``karat``, used by every block). The operators' token count
    is the model's (``1 + grid_h * grid_w`` at ``img_size``); other inputs resample them.
    """

    def __init__(self, grid: int = 3, rank: int = 12, sharing: str = "blockwise", **kwargs: Any) -> None:
        if sharing not in SHARING:
            raise ValueError(f"sharing must be one of {SHARING}, got {sharing!r}")
        if "attn_layer" in kwargs:
            raise ValueError("KArAtViT's attention layer is Fourier-KArAt")
        super().__init__(attn_layer=FourierKArAtAttention, **kwargs)
        self.karat_grid, self.karat_rank, self.sharing = grid, rank, sharing
        # timm's Block builds each layer with the default operator; replace it by the model's own.
        ref = self.blocks[0].attn.qkv.weight if len(self.blocks) else self.cls_token

        def operator() -> FourierOperator:
            return FourierOperator(
                self.blocks[0].attn.num_heads if len(self.blocks) else 1,
                grid,
                rank,
                num_tokens=self.patch_embed.num_patches + self.num_prefix_tokens,
                num_prefix_tokens=self.num_prefix_tokens,
                base_grid=self.patch_embed.grid_size,
                device=ref.device,
                dtype=ref.dtype,
            )

        if sharing == "universal":
            self.karat = operator()
            for blk in self.blocks:
                blk.attn.share_operator(self.karat)
        else:
            for blk in self.blocks:
                blk.attn.karat = operator()

    def karat_operators(self) -> list[FourierOperator]:
        """The model's distinct operators (one if universal, one per block if blockwise)."""
        if self.sharing == "universal":
            return [self.karat]
        return [blk.attn.operator for blk in self.blocks]

    def _pos_embed(self, x: torch.Tensor) -> torch.Tensor:
        """timm's, after telling every operator the patch grid of the tokens about to run."""
        grid = (x.shape[1], x.shape[2]) if self.dynamic_img_size else self.patch_embed.grid_size
        for op in self.karat_operators():
            op.token_grid = grid
        return super()._pos_embed(x)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """timm's groups; a universal operator (used by every block) goes with the final norm."""
        matcher = super().group_matcher(coarse)
        matcher["blocks"] = [*matcher["blocks"], (r"^karat\.", (99999,))]
        return matcher


# ----------------------------------------------------------------------------- conversion
# Token axis of each operator tensor (FourierOperator's layout).
_TOKEN_AXIS = {"fourier": 3, "base_weight": 2, "edge_scale": 2, "token_proj": 1}


def _fit_operators(state_dict: StateDict, model: KArAtViT) -> StateDict:
    """Resample the operators' token axis to the model's patch grid (a checkpoint from another size)."""
    own = model.state_dict()
    out = dict(state_dict)
    prefix = model.num_prefix_tokens
    for key, value in state_dict.items():
        axis = _TOKEN_AXIS.get(key.rpartition(".")[2])
        if axis is None or key not in own or not key.rpartition(".")[0].endswith("karat"):
            continue
        n_old, n_new = value.shape[axis], own[key].shape[axis]
        if n_old == n_new:
            continue
        side = int(round((n_old - prefix) ** 0.5))
        if side * side + prefix != n_old:
            raise ValueError(f"{key}: {n_old} tokens are not {prefix} prefix + a square patch grid")
        moved = value.movedim(axis, -2)
        flat = moved.reshape(-1, n_old, moved.shape[-1])
        keep_mass = not key.endswith("edge_scale")  # a multiplier of the Fourier terms, not summed
        fitted = resample_tokens(flat, (side, side), model.patch_embed.grid_size, prefix, keep_mass)
        out[key] = fitted.reshape(*moved.shape[:-2], n_new, moved.shape[-1]).movedim(-2, axis)
    return out


def convert_karat(state_dict: StateDict, model: torch.nn.Module | None = None) -> StateDict:
    """attnzoo / timm-layout checkpoints pass through (no official checkpoint exists to map); the
    position embedding and the operators' token axis are resampled when the model was built for
    another image size. ``edge_scale`` and the Fourier coefficients are resampled separately, so the
    result equals the on-the-fly resampling (which resamples their product) only where
    ``edge_scale`` is locally constant (it starts at 1)."""
    out = dict(state_dict)
    if isinstance(model, VisionTransformer):
        out = fit_pos_embed(
            out, model, num_prefix_tokens=0 if model.no_embed_class else model.num_prefix_tokens
        )
    if isinstance(model, KArAtViT):
        out = _fit_operators(out, model)
    return verify_against_model(out, model)


# ----------------------------------------------------------------------------- registration
# size -> (embed_dim, depth, num_heads): DeiT / timm ViT-Ti, -S, -B at patch 16, 224 px.
_GEOMETRY = {"tiny": (192, 12, 3), "small": (384, 12, 6), "base": (768, 12, 12)}

FAMILY = register_family(
    Family(
        name="karat",
        module=__name__,
        paper="Kolmogorov-Arnold Attention: Is Learnable Attention Better For Vision Transformers?",
        paper_ids="arXiv:2503.10632",
        repo="https://github.com/MaitySubhajit/KArAt",
        license="cc-by-nc-sa-4.0",
        citation="""@article{maity2025karat,
  title={Kolmogorov-Arnold Attention: Is Learnable Attention Better For Vision Transformers?},
  author={Maity, Subhajit and Hitsman, Killian and Li, Xin and Dutta, Aritra},
  journal={arXiv preprint arXiv:2503.10632},
  year={2025}
}""",
        converter=convert_karat,
        cfg=dict(
            first_conv="patch_embed.proj",
            classifier="head",
        ),
        weights=tuple(
            Weights(
                f"karat_vit_{size}_g{grid}{sharing}",
                "untrained",
                # The paper's Table 1 (also on the official project page, docs/index.html): the six
                # headline variants only.
                params_m={
                    "tiny_g3b": 6.29,
                    "tiny_g3u": 5.59,
                    "small_g3b": 23.58,
                    "small_g3u": 22.18,
                    "base_g1b": 87.51,
                    "base_g1u": 85.95,
                }.get(f"{size}_g{grid}{sharing}"),
                reported_by="paper Table 1 / official project page",
                notes=(
                    "no weights released: the official repository has published neither code nor weights",
                ),
            )
            for size in _GEOMETRY
            for grid in (1, 3)
            for sharing in "bu"
        ),
        feature_cfg=dict(feature_cls="getter", out_indices=3),
        # plain_vit, plus the universal operator (used by every block): it freezes with the last stage.
        dense=dataclasses.replace(DenseLayout.plain_vit(), last=r"(norm|fc_norm|karat)\."),
    )
)

_SHARING = {"b": "blockwise", "u": "universal"}
default_cfgs = FAMILY.default_cfgs()


def _create(variant: str, pretrained: bool, **kwargs: Any) -> KArAtViT:
    """``karat_vit_<size>_g<G><b|u>``: geometry, grid size and sharing come from the name."""
    size, code = variant.removeprefix("karat_vit_").split("_")
    embed_dim, depth, num_heads = _GEOMETRY[size]
    model_args = dict(
        grid=int(code[1:-1]),
        rank=12,
        sharing=_SHARING[code[-1]],
        patch_size=16,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
    )
    return FAMILY.build(KArAtViT, variant, pretrained, **{**model_args, **kwargs})


@register_model
def karat_vit_tiny_g1b(pretrained: bool = False, **kwargs: Any) -> KArAtViT:
    """ViT-Ti/16 with Fourier-KArAt, G = 1, blockwise (no weights released)."""
    return _create("karat_vit_tiny_g1b", pretrained, **kwargs)


@register_model
def karat_vit_tiny_g1u(pretrained: bool = False, **kwargs: Any) -> KArAtViT:
    """ViT-Ti/16 with Fourier-KArAt, G = 1, universal (no weights released)."""
    return _create("karat_vit_tiny_g1u", pretrained, **kwargs)


@register_model
def karat_vit_tiny_g3b(pretrained: bool = False, **kwargs: Any) -> KArAtViT:
    """ViT-Ti/16 with Fourier-KArAt, G = 3, blockwise: the paper's ViT-Tiny + G3B (6.29M at 10 classes)."""
    return _create("karat_vit_tiny_g3b", pretrained, **kwargs)


@register_model
def karat_vit_tiny_g3u(pretrained: bool = False, **kwargs: Any) -> KArAtViT:
    """ViT-Ti/16 with Fourier-KArAt, G = 3, universal: the paper's ViT-Tiny + G3U (5.59M at 10 classes)."""
    return _create("karat_vit_tiny_g3u", pretrained, **kwargs)


@register_model
def karat_vit_small_g1b(pretrained: bool = False, **kwargs: Any) -> KArAtViT:
    """ViT-S/16 with Fourier-KArAt, G = 1, blockwise (no weights released)."""
    return _create("karat_vit_small_g1b", pretrained, **kwargs)


@register_model
def karat_vit_small_g1u(pretrained: bool = False, **kwargs: Any) -> KArAtViT:
    """ViT-S/16 with Fourier-KArAt, G = 1, universal (no weights released)."""
    return _create("karat_vit_small_g1u", pretrained, **kwargs)


@register_model
def karat_vit_small_g3b(pretrained: bool = False, **kwargs: Any) -> KArAtViT:
    """ViT-S/16 with Fourier-KArAt, G = 3, blockwise: the paper's ViT-Small + G3B (no weights released)."""
    return _create("karat_vit_small_g3b", pretrained, **kwargs)


@register_model
def karat_vit_small_g3u(pretrained: bool = False, **kwargs: Any) -> KArAtViT:
    """ViT-S/16 with Fourier-KArAt, G = 3, universal: the paper's ViT-Small + G3U (no weights released)."""
    return _create("karat_vit_small_g3u", pretrained, **kwargs)


@register_model
def karat_vit_base_g1b(pretrained: bool = False, **kwargs: Any) -> KArAtViT:
    """ViT-B/16 with Fourier-KArAt, G = 1, blockwise: the paper's ViT-Base + G1B (no weights released)."""
    return _create("karat_vit_base_g1b", pretrained, **kwargs)


@register_model
def karat_vit_base_g1u(pretrained: bool = False, **kwargs: Any) -> KArAtViT:
    """ViT-B/16 with Fourier-KArAt, G = 1, universal: the paper's ViT-Base + G1U (no weights released)."""
    return _create("karat_vit_base_g1u", pretrained, **kwargs)


@register_model
def karat_vit_base_g3b(pretrained: bool = False, **kwargs: Any) -> KArAtViT:
    """ViT-B/16 with Fourier-KArAt, G = 3, blockwise (no weights released)."""
    return _create("karat_vit_base_g3b", pretrained, **kwargs)


@register_model
def karat_vit_base_g3u(pretrained: bool = False, **kwargs: Any) -> KArAtViT:
    """ViT-B/16 with Fourier-KArAt, G = 3, universal (no weights released)."""
    return _create("karat_vit_base_g3u", pretrained, **kwargs)

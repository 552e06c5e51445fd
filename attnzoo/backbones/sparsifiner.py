"""Sparsifiner: DeiT with learned, instance-dependent sparse attention (Wei et al., CVPR 2023).

The official model (lim142857/Sparsifiner, MIT) is a DeiT whose attention layers each carry a
low-rank connectivity predictor; at eval every non-class query attends to its top
``ceil(0.25 * N)`` keys (:mod:`attnzoo.layers.sparsifiner`). Its backbone keys are timm's ViT keys,
so this family is attnzoo's ViT skeleton (:mod:`attnzoo.backbones._vit`) with
:class:`~attnzoo.layers.sparsifiner.SparsifinerAttention`, and the official checkpoints (and timm
DeiT weights, for the backbone part) load as they are.

Two forms: ``sparsifiner_deit_*`` (the official default configuration: sparse attention, all tokens
kept) and ``sparsifiner_deit_*_tp`` (token pruning at blocks 3 / 6 / 9, keep rate ``0.7 ** j`` at
the j-th, pruned tokens zero-filled as the official code does). The official repository releases
no Sparsifiner weights (it links DeiT checkpoints as initialisation), so every variant is
``untrained``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from timm.models import register_model
from timm.models.vision_transformer import Block

from attnzoo.backbones._convert import StateDict, fit_pos_embed, verify_against_model
from attnzoo.backbones._family import DenseLayout, Family, Weights, register_family
from attnzoo.backbones._vit import AttnZooViT
from attnzoo.layers.checks import check_no_mask
from attnzoo.layers.sparsifiner import (
    ConnectivityPredictor,
    SparsifinerAttention,
    fit_token_table,
    token_mask_from_zeros,
)

__all__ = ["SparsifinerBlock", "SparsifinerViT", "convert_sparsifiner"]


class SparsifinerBlock(Block):
    """timm's ``Block`` whose attention carries the live-token mask between blocks.

    A block after a pruning block reads the mask from the zero-filled tokens
    (``reads_token_mask``, set by the model); a block with a mask zero-fills the pruned tokens of its
    output, as the official block does.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reads_token_mask = False

    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False
    ) -> torch.Tensor:
        check_no_mask(attn_mask, is_causal, "SparsifinerBlock")
        # Static (not data-dependent) so that torch.fx traces one branch: a block without pruning
        # before or in it is timm's block.
        masked = self.reads_token_mask or self.attn.token_keep_rate is not None
        if masked:
            token_mask = token_mask_from_zeros(x) if self.reads_token_mask else None
            out, token_mask = self.attn(self.norm1(x), token_mask=token_mask, return_token_mask=True)
        else:
            out = self.attn(self.norm1(x))
        x = x + self.drop_path1(self.ls1(out))
        x = x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))
        if not masked:
            return x
        patches = x[:, 1:].masked_fill(~token_mask[..., None], 0.0)
        return torch.cat([x[:, :1], patches], dim=1)


class SparsifinerViT(AttnZooViT):
    """attnzoo's ViT skeleton with Sparsifiner attention in every block.

    Args:
        attn_keep_rate: share of the keys each non-class query keeps (official 0.25: 50 of 197).
        token_pruning_loc: blocks that prune tokens (official TP setting: ``(3, 6, 9)``; default none).
        token_keep_rate: keep rate base; the j-th pruning block keeps ``ceil(base ** j * (N - 1))``.
        reduce_n_factor, reduce_c_factor: the predictor's token / channel reductions (official 6, 2).
        basis_threshold, basis_topk: the predictor's eval settings (official 0.02, 8).
        basis_tokens: the token count the predictor's basis slots derive from (``// reduce_n_factor``):
            the official 224 px count, whatever ``img_size`` the model is built for.
        Other arguments are timm's ``VisionTransformer``'s (DeiT defaults).
    """

    # The onnxruntime check of `attnzoo export`: float32 rounding differs between the runtimes by more
    # than the smallest top-k margins of a predictor, and a flipped key moves the logits by ~5e-4 of
    # their scale (measured at 96 px); the dense path (keep rate 1) matches to 1e-6.
    onnx_rtol = 2e-3

    def __init__(
        self,
        attn_keep_rate: float = 0.25,
        token_pruning_loc: Sequence[int] = (),
        token_keep_rate: float = 0.7,
        reduce_n_factor: int = 6,
        reduce_c_factor: int = 2,
        basis_threshold: float = 0.02,
        basis_topk: int = 8,
        basis_tokens: int = 197,
        **kwargs: Any,
    ) -> None:
        if "attn_layer" in kwargs or "block_fn" in kwargs:
            raise ValueError("SparsifinerViT chooses its own block and attention layer")
        if kwargs.get("class_token", True) is False or kwargs.get("reg_tokens", 0):
            raise ValueError("Sparsifiner needs exactly one class token and no register tokens")
        super().__init__(attn_layer=SparsifinerAttention, block_fn=SparsifinerBlock, **kwargs)
        depth = len(self.blocks)
        pruning = sorted(set(token_pruning_loc))
        if any(not 0 <= i < depth for i in pruning):
            raise ValueError(f"token_pruning_loc {tuple(token_pruning_loc)} outside blocks 0..{depth - 1}")
        if pruning and not 0.0 < token_keep_rate <= 1.0:
            raise ValueError(f"token_keep_rate must lie in (0, 1], got {token_keep_rate}")
        grid = self.patch_embed.grid_size
        num_tokens = grid[0] * grid[1] + 1
        ref = self.cls_token
        for i, blk in enumerate(self.blocks):
            blk.attn.mask_predictor = ConnectivityPredictor(
                blk.attn.head_dim,
                blk.attn.num_heads,
                num_tokens=num_tokens,
                attn_keep_rate=attn_keep_rate,
                reduce_n_factor=reduce_n_factor,
                reduce_c_factor=reduce_c_factor,
                basis_threshold=basis_threshold,
                basis_topk=basis_topk,
                basis_tokens=basis_tokens,
                device=ref.device,
                dtype=ref.dtype,
            )
            if i in pruning:
                blk.attn.token_keep_rate = token_keep_rate ** (pruning.index(i) + 1)
            blk.reads_token_mask = bool(pruning) and i > pruning[0]
            blk.attn.mask_predictor.requires_grad_(False)
        self.token_pruning_loc = tuple(pruning)

    def predictor_parameters(self) -> list[torch.nn.Parameter]:
        """The connectivity predictors' parameters. They are frozen (``requires_grad=False``) at
        construction: the task loss cannot reach them (the key choice is a detached top-k, as in the
        official model), so left trainable they would be unused parameters (an error under DDP).
        Train them with :meth:`attention_reconstruction_loss` after ``requires_grad_(True)``."""
        return [p for blk in self.blocks for p in blk.attn.mask_predictor.parameters()]

    def attention_reconstruction_loss(self, x: torch.Tensor) -> torch.Tensor:
        """The official first training phase: run the model densely (softmax attention, no token
        pruning) and return the mean over blocks of each predictor's summed squared error against its
        block's dense attention rows. Only the predictors receive gradients from it."""
        x = self.norm_pre(self.patch_drop(self._pos_embed(self.patch_embed(x))))
        losses = []
        for blk in self.blocks:
            out, loss = blk.attn.reconstruction(blk.norm1(x))
            x = x + blk.drop_path1(blk.ls1(out))
            x = x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))
            losses.append(loss)
        return torch.stack(losses).mean()


# ----------------------------------------------------------------------------- conversion
_PREDICTOR_TABLES = ("mask_predictor.proj_n", "mask_predictor.proj_back_n")


def convert_sparsifiner(state_dict: StateDict, model: torch.nn.Module | None = None) -> StateDict:
    """Official Sparsifiner checkpoint (or a timm / DeiT one) -> attnzoo keys.

    The keys are the same; ``{'model': ...}`` wrappers are unwrapped, and for a model built for
    another image size ``pos_embed`` and the predictors' token tables are resampled.
    """
    if "model" in state_dict and isinstance(state_dict["model"], dict):
        state_dict = state_dict["model"]
    out = dict(state_dict)
    if isinstance(model, SparsifinerViT):
        out = fit_pos_embed(out, model, num_prefix_tokens=model.num_prefix_tokens)
        num_tokens = model.patch_embed.num_patches + 1
        for key, value in list(out.items()):
            if key.endswith(_PREDICTOR_TABLES) and value.ndim == 2 and value.shape[0] != num_tokens:
                out[key] = fit_token_table(value, num_tokens)
    return verify_against_model(out, model)


# ----------------------------------------------------------------------------- registration
# geometry -> (embed_dim, depth, num_heads): DeiT-Ti / S / B, patch 16, 224 px.
_GEOMETRY = {"t": (192, 12, 3), "s": (384, 12, 6), "b": (768, 12, 12)}

FAMILY = register_family(
    Family(
        name="sparsifiner",
        module=__name__,
        paper="Sparsifiner: Learning Sparse Instance-Dependent Attention for Efficient Vision Transformers",
        paper_ids="arXiv:2303.13755",
        repo="https://github.com/lim142857/Sparsifiner",
        license="mit",
        citation="""@inproceedings{wei2023sparsifiner,
  title={Sparsifiner: Learning Sparse Instance-Dependent Attention for Efficient Vision Transformers},
  author={Wei, Cong and Duke, Brendan and Jiang, Ruowei and Aarabi, Parham and
          Taylor, Graham W. and Shkurti, Florian},
  booktitle={Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages={22680--22689},
  year={2023}
}""",
        converter=convert_sparsifiner,
        cfg=dict(
            first_conv="patch_embed.proj",
            classifier="head",
        ),
        weights=tuple(
            Weights(
                f"sparsifiner_deit_{geometry}{tp}",
                "untrained",
                notes=(
                    "no Sparsifiner weights released: the official repository links DeiT checkpoints "
                    "as initialisation only",
                ),
            )
            for geometry in _GEOMETRY
            for tp in ("", "_tp")
        ),
        goldens={
            "sparsifiner_deit_s": "sparsifiner_deit_s",
            "sparsifiner_deit_s_tp": "sparsifiner_deit_s_tp",
        },
        feature_cfg=dict(feature_cls="getter", out_indices=3),
        dense=DenseLayout.plain_vit(),
    )
)

_TOKEN_PRUNING = dict(token_pruning_loc=(3, 6, 9), token_keep_rate=0.7)
default_cfgs = FAMILY.default_cfgs()


def _create(variant: str, pretrained: bool, **kwargs: Any) -> SparsifinerViT:
    """``sparsifiner_deit_<t|s|b>[_tp]``: the geometry and the token pruning come from the name."""
    geometry, _, tp = variant.removeprefix("sparsifiner_deit_").partition("_")
    embed_dim, depth, num_heads = _GEOMETRY[geometry]
    model_args: dict[str, Any] = dict(patch_size=16, embed_dim=embed_dim, depth=depth, num_heads=num_heads)
    model_args.update(qkv_bias=True, **(_TOKEN_PRUNING if tp else {}))
    return FAMILY.build(SparsifinerViT, variant, pretrained, **{**model_args, **kwargs})


@register_model
def sparsifiner_deit_t(pretrained: bool = False, **kwargs: Any) -> SparsifinerViT:
    """Sparsifiner on DeiT-Ti/16 (sparse attention, keep rate 0.25; no weights released)."""
    return _create("sparsifiner_deit_t", pretrained, **kwargs)


@register_model
def sparsifiner_deit_s(pretrained: bool = False, **kwargs: Any) -> SparsifinerViT:
    """Sparsifiner on DeiT-S/16, the official default configuration (no weights released)."""
    return _create("sparsifiner_deit_s", pretrained, **kwargs)


@register_model
def sparsifiner_deit_b(pretrained: bool = False, **kwargs: Any) -> SparsifinerViT:
    """Sparsifiner on DeiT-B/16 (sparse attention, keep rate 0.25; no weights released)."""
    return _create("sparsifiner_deit_b", pretrained, **kwargs)


@register_model
def sparsifiner_deit_t_tp(pretrained: bool = False, **kwargs: Any) -> SparsifinerViT:
    """Sparsifiner on DeiT-Ti/16 with token pruning at blocks 3 / 6 / 9 (keep base 0.7)."""
    return _create("sparsifiner_deit_t_tp", pretrained, **kwargs)


@register_model
def sparsifiner_deit_s_tp(pretrained: bool = False, **kwargs: Any) -> SparsifinerViT:
    """Sparsifiner on DeiT-S/16 with token pruning at blocks 3 / 6 / 9 (keep base 0.7), as the
    official token-pruning setting."""
    return _create("sparsifiner_deit_s_tp", pretrained, **kwargs)


@register_model
def sparsifiner_deit_b_tp(pretrained: bool = False, **kwargs: Any) -> SparsifinerViT:
    """Sparsifiner on DeiT-B/16 with token pruning at blocks 3 / 6 / 9 (keep base 0.7)."""
    return _create("sparsifiner_deit_b_tp", pretrained, **kwargs)

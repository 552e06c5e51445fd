"""ConViT (d'Ascoli et al. 2021, arXiv:2103.10697): a ViT whose first blocks use gated positional
self-attention, initialised to behave like convolutions.

Same parameters and math as timm's ``convit_*`` (timm's and the official checkpoints load key for key).
The model is attnzoo's ViT skeleton (timm's ``VisionTransformer``, :mod:`attnzoo.backbones._vit`), so
timm's head, pooling, features, pruning and checkpointing come with it, plus any input size (the image
is padded to whole patches and the position embedding resampled to the patch grid; at the training size
nothing is resampled). ConViT's own part is the block loop: the GPSA blocks get the patch grid, and the
class token joins only after them.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
import torch.utils.checkpoint
from timm.layers import trunc_normal_
from timm.models import register_model
from timm.models.vision_transformer import Block
from torch import nn

from attnzoo._timm import feature_take_indices
from attnzoo.backbones._checks import check_output_fmt
from attnzoo.backbones._convert import StateDict, fit_pos_embed, verify_against_model
from attnzoo.backbones._family import DenseLayout, Family, Source, Weights, register_family
from attnzoo.backbones._vit import AttnZooViT
from attnzoo.layers.gpsa import GatedPositionalSelfAttention, MultiHeadSelfAttention

__all__ = ["ConViT", "ConViTBlock", "convert_convit"]


# torch.fx: timm's forward passes both as traced inputs, so the check must be one call run with the graph.
# torch.fx.wrap, not timm's notrace registry: that one patches a module's globals only once one of its
# forwards is traced, and this check runs before any forward defined here (ConViTBlock's).
@torch.fx.wrap
def _check_no_mask(attn_mask: torch.Tensor | None, is_causal: bool) -> None:
    """ConViT takes no attention mask: its token count changes when the class token joins."""
    if attn_mask is not None or is_causal:
        raise NotImplementedError("ConViT supports no attention mask / causal mode")


class ConViTBlock(Block):
    """timm's pre-norm ``Block`` whose attention also gets the patch grid: GPSA (which needs it) in the
    blocks before ``local_up_to_layer``, ``attn_layer`` (ConViT: multi-head self-attention) after.

    ``depth`` is the block's index (timm's ``VisionTransformer`` passes it to every block).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        depth: int = 0,
        local_up_to_layer: int = 10,
        locality_strength: float = 1.0,
        attn_layer: type[nn.Module] = MultiHeadSelfAttention,
        **kwargs: Any,
    ) -> None:
        local = depth < local_up_to_layer
        attn_layer = GatedPositionalSelfAttention if local else attn_layer
        super().__init__(dim, num_heads, attn_layer=attn_layer, depth=depth, **kwargs)
        if local:  # timm's Block passes no layer-specific arguments; local_init reads this
            self.attn.locality_strength = locality_strength

    def forward(self, x: torch.Tensor, grid_size: tuple[int, int]) -> torch.Tensor:
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x), grid_size)))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


class ConViT(AttnZooViT):
    """ConViT: ``local_up_to_layer`` GPSA blocks on the patch tokens, then the class token is prepended
    and the remaining blocks use plain multi-head self-attention.

    ``embed_dim`` is the full token width (timm's ``convit`` takes it per head and multiplies by
    ``num_heads``). ``locality_strength`` scales GPSA's convolution-like initialisation;
    ``use_pos_embed``: a learned position embedding on the patches (``(1, N, C)``, no class-token slot).
    Other arguments are timm ``VisionTransformer``'s, defaulting to ConViT-B (16 heads, no qkv bias);
    ConViT's layout fixes the class token, the position embedding, the norm before pooling and the blocks.
    """

    def __init__(
        self,
        local_up_to_layer: int = 10,
        locality_strength: float = 1.0,
        use_pos_embed: bool = True,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("patch_drop_rate"):
            raise ValueError("ConViT's GPSA needs the whole patch grid: patch_drop_rate must be 0")
        kwargs.setdefault("num_heads", 16)
        kwargs.setdefault("qkv_bias", False)
        block = partial(ConViTBlock, local_up_to_layer=local_up_to_layer, locality_strength=locality_strength)
        super().__init__(
            class_token=True,
            no_embed_class=True,
            pos_embed="learn" if use_pos_embed else "none",
            fc_norm=False,
            dynamic_img_size=True,
            block_fn=block,
            attn_layer=MultiHeadSelfAttention,
            **kwargs,
        )
        self.local_up_to_layer = local_up_to_layer

    def init_weights(self, mode: str = "", needs_reset: bool = True) -> None:
        """timm's ViT initialisation, then ConViT's: a truncated-normal (std .02) class token and
        convolution-like GPSA (``local_init``, after timm's re-initialisation of every linear layer)."""
        super().init_weights(mode, needs_reset)
        trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, GatedPositionalSelfAttention):
                m.local_init()

    def _run_blocks(
        self, x: torch.Tensor, blocks: nn.Sequential, take: list[int] | tuple[int, ...] = ()
    ) -> tuple[torch.Tensor, list[torch.Tensor], tuple[int, int]]:
        """Images -> (final tokens, class token first; the patch tokens after each block in ``take``;
        the patch grid)."""
        x = self.patch_embed(x)  # (B, gh, gw, C), padded to whole patches
        grid = (x.shape[1], x.shape[2])
        x = self.norm_pre(self._pos_embed(x))  # timm's: position embedding on the patches, class token first
        prefix, x = x[:, : self.num_prefix_tokens], x[:, self.num_prefix_tokens :]
        taken = []
        for i, blk in enumerate(blocks):
            if i == self.local_up_to_layer:
                x = torch.cat((prefix, x), dim=1)
            if self.grad_checkpointing:
                x = torch.utils.checkpoint.checkpoint(blk, x, grid, use_reentrant=False)
            else:
                x = blk(x, grid)
            if i in take:
                taken.append(x[:, self.num_prefix_tokens :] if i >= self.local_up_to_layer else x)
        if len(blocks) <= self.local_up_to_layer:  # every block ran was local: the class token joins now
            x = torch.cat((prefix, x), dim=1)
        return x, taken, grid

    def forward_features(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False
    ) -> torch.Tensor:
        """``(B, 1 + N, C)`` normed tokens, class token first (``attn_mask`` / ``is_causal``: timm's
        ``forward`` passes them; only their defaults are accepted)."""
        _check_no_mask(attn_mask, is_causal)
        return self.norm(self._run_blocks(x, self.blocks)[0])

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | tuple[int, ...] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Patch-token maps after the chosen blocks (``indices``: last n if int, all if None).

        Maps are ``(B, C, ceil(H / 16), ceil(W / 16))`` (``output_fmt='NHWC'`` for channels last),
        the class token dropped; ``norm=True`` applies the final norm to each. Unless
        ``intermediates_only``, also returns the final normed tokens as ``forward_features`` does.
        """
        check_output_fmt(output_fmt)
        take, max_index = feature_take_indices(len(self.blocks), indices)
        blocks = self.blocks[: max_index + 1] if stop_early else self.blocks
        x, taken, (gh, gw) = self._run_blocks(x, blocks, take)
        maps = [(self.norm(y) if norm else y).unflatten(1, (gh, gw)) for y in taken]
        if output_fmt == "NCHW":
            maps = [y.permute(0, 3, 1, 2).contiguous() for y in maps]
        return maps if intermediates_only else (self.norm(x), maps)


def convert_convit(state_dict: StateDict, model: nn.Module | None = None) -> StateDict:
    """timm's and the official ConViT checkpoints share attnzoo's keys: drop stray ``rel_indices``
    tables, resample ``pos_embed`` to the model's grid when the model was built for another size, verify.
    """
    out = {k: v for k, v in state_dict.items() if not k.endswith("rel_indices")}
    out = fit_pos_embed(out, model)  # ConViT's pos_embed covers the patches only
    return verify_against_model(out, model)


FAMILY = register_family(
    Family(
        name="convit",
        module=__name__,
        paper="ConViT: Improving Vision Transformers with Soft Convolutional Inductive Biases",
        paper_ids="arXiv:2103.10697",
        repo="https://github.com/facebookresearch/convit",
        license="apache-2.0",
        citation="""@article{d2021convit,
  title={ConViT: Improving Vision Transformers with Soft Convolutional Inductive Biases},
  author={d'Ascoli, St{\\'e}phane and Touvron, Hugo and Leavitt, Matthew and Morcos, Ari and
          Biroli, Giulio and Sagun, Levent},
  journal={arXiv preprint arXiv:2103.10697},
  year={2021}
}""",
        converter=convert_convit,
        cfg=dict(
            first_conv="patch_embed.proj",
            classifier="head",
        ),
        weights=tuple(
            Weights(
                f"az_{model}",
                "fb_in1k",
                # timm's Hub repos hold the official weights as safetensors; the official release second.
                (
                    Source(hf_hub_id=f"timm/{model}.fb_in1k"),
                    Source(url=f"https://dl.fbaipublicfiles.com/convit/{model}.pth"),
                ),
                top1=top1,
                params_m=params_m,
                reported_by="paper / official release",
            )
            for model, top1, params_m in (
                ("convit_tiny", 73.1, 6),
                ("convit_small", 81.3, 27),
                ("convit_base", 82.4, 86),
            )
        ),
        goldens={"convit_tiny": "az_convit_tiny"},
        feature_cfg=dict(feature_cls="getter", out_indices=3),
        dense=DenseLayout.plain_vit(),
    )
)


default_cfgs = FAMILY.default_cfgs()


def _create(variant: str, pretrained: bool, heads: int, **kwargs: Any) -> ConViT:
    """ConViT's variants differ only in the head count: 48 channels per head, 12 blocks (10 GPSA)."""
    args = dict(embed_dim=48 * heads, num_heads=heads, depth=12, local_up_to_layer=10, locality_strength=1.0)
    return FAMILY.build(ConViT, variant, pretrained, **{**args, **kwargs})


@register_model
def az_convit_tiny(pretrained: bool = False, **kwargs: Any) -> ConViT:
    """ConViT-Ti: 192 wide, 4 heads, 12 blocks (10 GPSA)."""
    return _create("az_convit_tiny", pretrained, 4, **kwargs)


@register_model
def az_convit_small(pretrained: bool = False, **kwargs: Any) -> ConViT:
    """ConViT-S: 432 wide, 9 heads, 12 blocks (10 GPSA)."""
    return _create("az_convit_small", pretrained, 9, **kwargs)


@register_model
def az_convit_base(pretrained: bool = False, **kwargs: Any) -> ConViT:
    """ConViT-B: 768 wide, 16 heads, 12 blocks (10 GPSA)."""
    return _create("az_convit_base", pretrained, 16, **kwargs)

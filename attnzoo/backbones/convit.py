"""ConViT (d'Ascoli et al. 2021, arXiv:2103.10697): a ViT whose first blocks use gated positional
self-attention, initialised to behave like convolutions.

Same parameters and math as timm's ``convit_*`` (timm's and the official checkpoints load key for key),
plus what detectors need: any input size (the image is padded to a multiple of the patch size and the
position embedding resampled to the actual patch grid; at the training size nothing is resampled),
``forward_intermediates`` / ``features_only`` maps, and gradient checkpointing.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.utils.checkpoint
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, LayerNorm, Mlp, PatchEmbed, resample_abs_pos_embed, trunc_normal_
from timm.models import register_model
from torch import nn

from attnzoo._timm import feature_take_indices
from attnzoo.backbones._checks import check_images
from attnzoo.backbones._convert import StateDict, fit_pos_embed, verify_against_model
from attnzoo.backbones._family import Family, register_family
from attnzoo.layers.gpsa import GatedPositionalSelfAttention, MultiHeadSelfAttention

__all__ = ["ConViT", "ConViTBlock", "convert_convit"]


class ConViTBlock(nn.Module):
    """Pre-norm transformer block whose token mixer is GPSA (local blocks) or MHSA."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        proj_drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        use_gpsa: bool = True,
        locality_strength: float = 1.0,
        act_layer: type[nn.Module] = nn.GELU,
        norm_layer: type[nn.Module] = LayerNorm,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.use_gpsa = use_gpsa
        self.norm1 = norm_layer(dim, **dd)
        if use_gpsa:
            self.attn = GatedPositionalSelfAttention(
                dim, num_heads, qkv_bias, attn_drop, proj_drop, locality_strength=locality_strength, **dd
            )
        else:
            self.attn = MultiHeadSelfAttention(dim, num_heads, qkv_bias, attn_drop, proj_drop, **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = norm_layer(dim, **dd)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=proj_drop, **dd)

    def forward(self, x: torch.Tensor, grid_size: tuple[int, int] | None = None) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), grid_size))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class ConViT(nn.Module):
    """ConViT: ``local_up_to_layer`` GPSA blocks on the patch tokens, then the class token is prepended
    and the remaining blocks use plain self-attention.

    ``embed_dim`` is the full token width (timm's ``convit`` takes it per head and multiplies by
    ``num_heads``). Any ``H x W`` input works: it is padded to a multiple of ``patch_size`` and the
    learned position embedding is resampled (bicubic) to the patch grid when that differs from
    ``img_size // patch_size``.
    """

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "token",
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        drop_rate: float = 0.0,
        pos_drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        local_up_to_layer: int = 10,
        locality_strength: float = 1.0,
        use_pos_embed: bool = True,
        norm_layer: type[nn.Module] = LayerNorm,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if global_pool not in ("", "avg", "token"):
            raise ValueError(f"global_pool must be '', 'avg' or 'token', got {global_pool!r}")
        dd = {"device": device, "dtype": dtype}
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.global_pool = global_pool
        self.num_features = self.head_hidden_size = self.embed_dim = embed_dim
        self.local_up_to_layer = local_up_to_layer
        self.locality_strength = locality_strength
        self.use_pos_embed = use_pos_embed
        self.num_prefix_tokens = 1
        self.grad_checkpointing = False

        self.patch_embed = PatchEmbed(
            img_size=img_size,
            patch_size=patch_size,
            in_chans=in_chans,
            embed_dim=embed_dim,
            output_fmt="NHWC",
            strict_img_size=False,
            dynamic_img_pad=True,
            **dd,
        )
        self.num_patches = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim, **dd))
        if use_pos_embed:
            self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches, embed_dim, **dd))
        else:
            self.pos_embed = None
        self.pos_drop = nn.Dropout(pos_drop_rate)

        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList(
            ConViTBlock(
                embed_dim,
                num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                proj_drop=proj_drop_rate,
                attn_drop=attn_drop_rate,
                drop_path=rates[i],
                use_gpsa=i < local_up_to_layer,
                locality_strength=locality_strength,
                norm_layer=norm_layer,
                **dd,
            )
            for i in range(depth)
        )
        self.norm = norm_layer(embed_dim, **dd)
        reduction = self.patch_embed.feat_ratio()
        self.feature_info = [
            dict(num_chs=embed_dim, reduction=reduction, module=f"blocks.{i}") for i in range(depth)
        ]
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dim, num_classes, **dd) if num_classes > 0 else nn.Identity()
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """truncated-normal (std .02) tokens and linears, zero biases, unit norms, then GPSA locality."""
        if self.pos_embed is not None:
            trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, GatedPositionalSelfAttention):
                m.local_init()

    # ----------------------------------------------------------------- timm model API
    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token"} if self.pos_embed is not None else {"cls_token"}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return dict(
            stem=r"^cls_token|pos_embed|patch_embed", blocks=[(r"^blocks\.(\d+)", None), (r"^norm", (99999,))]
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            if global_pool not in ("", "avg", "token"):
                raise ValueError(f"global_pool must be '', 'avg' or 'token', got {global_pool!r}")
            self.global_pool = global_pool
        ref = self.cls_token
        self.head = (
            nn.Linear(self.embed_dim, num_classes, device=ref.device, dtype=ref.dtype)
            if num_classes > 0
            else nn.Identity()
        )

    # ----------------------------------------------------------------- forward pieces
    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        check_images(x, self.in_chans, "ConViT")
        x = self.patch_embed(x)  # (B, gh, gw, C), padded up to whole patches
        grid = (x.shape[1], x.shape[2])
        x = x.flatten(1, 2)
        if self.pos_embed is not None:
            pos = self.pos_embed
            if grid != tuple(self.patch_embed.grid_size):
                pos = resample_abs_pos_embed(
                    pos, new_size=grid, old_size=self.patch_embed.grid_size, num_prefix_tokens=0
                )
            x = x + pos
        return self.pos_drop(x), grid

    def _add_cls(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)

    def _block(self, blk: nn.Module, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return torch.utils.checkpoint.checkpoint(blk, x, grid, use_reentrant=False)
        return blk(x, grid)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1 + N, C)`` normed tokens, class token first."""
        x, grid = self._embed(x)
        for i, blk in enumerate(self.blocks):
            if i == self.local_up_to_layer:
                x = self._add_cls(x)
            x = self._block(blk, x, grid)
        if len(self.blocks) <= self.local_up_to_layer:  # every block local: prepend the class token now
            x = self._add_cls(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == "avg":
            x = x[:, self.num_prefix_tokens :].mean(dim=1)
        elif self.global_pool == "token":
            x = x[:, 0]
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

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
        if output_fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NHWC', got {output_fmt!r}")
        take, max_index = feature_take_indices(len(self.blocks), indices)
        x, (gh, gw) = self._embed(x)
        B = x.shape[0]
        blocks = self.blocks[: max_index + 1] if stop_early else self.blocks
        intermediates = []
        has_cls = False
        for i, blk in enumerate(blocks):
            if i == self.local_up_to_layer:
                x, has_cls = self._add_cls(x), True
            x = self._block(blk, x, (gh, gw))
            if i in take:
                y = self.norm(x) if norm else x
                y = y[:, self.num_prefix_tokens :] if has_cls else y
                y = y.reshape(B, gh, gw, -1)
                intermediates.append(y.permute(0, 3, 1, 2).contiguous() if output_fmt == "NCHW" else y)
        if intermediates_only:
            return intermediates
        if not has_cls:
            x = self._add_cls(x)
        return self.norm(x), intermediates

    def prune_intermediate_layers(
        self,
        indices: int | list[int] | tuple[int, ...] = 1,
        prune_norm: bool = False,
        prune_head: bool = True,
    ) -> list[int]:
        """Drop the blocks after the last one ``indices`` asks for (and norm / head); return the indices."""
        take, max_index = feature_take_indices(len(self.blocks), indices)
        self.blocks = self.blocks[: max_index + 1]
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, "")
        return take


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
        converter=convert_convit,
        cfg=dict(
            num_classes=1000,
            input_size=(3, 224, 224),
            pool_size=None,
            crop_pct=0.875,
            interpolation="bicubic",
            mean=IMAGENET_DEFAULT_MEAN,
            std=IMAGENET_DEFAULT_STD,
            fixed_input_size=False,
            first_conv="patch_embed.proj",
            classifier="head",
        ),
        goldens={"convit_tiny": "az_convit_tiny"},
        feature_cfg=dict(feature_cls="getter", out_indices=3),
    )
)


def _release(name: str, top1: float) -> dict[str, Any]:
    return dict(
        url=f"https://dl.fbaipublicfiles.com/convit/{name}.pth",
        hf_hub_id=f"timm/{name}.fb_in1k",
        notes=(f"original ImageNet-1k top-1 {top1:.1f} at 224px (paper / official release)",),
    )


default_cfgs = FAMILY.default_cfgs(
    {
        "az_convit_tiny.fb_in1k": _release("convit_tiny", 73.1),
        "az_convit_small.fb_in1k": _release("convit_small", 81.3),
        "az_convit_base.fb_in1k": _release("convit_base", 82.4),
    }
)


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

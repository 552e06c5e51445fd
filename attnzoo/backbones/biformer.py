"""BiFormer (Zhu et al., CVPR 2023, arXiv:2303.08810): a 4-stage hierarchical backbone whose stages
1-3 mix tokens with bi-level routing attention and whose stage 4 uses global attention.

Same parameters and math as the official ``models/biformer.py`` (with ``ops/bra_legacy.py``), so the
released checkpoints load key for key. Beyond the official code: any input size (the official model
asserts sides divisible by the 7 x 7 region grid at every stage; here each attention layer pads its map
to whole regions and masks the padding, see :class:`attnzoo.layers.BiLevelRoutingAttention`),
``forward_intermediates`` / ``features_only`` (strides 4, 8, 16, 32), gradient checkpointing, and the
Triton routed-attention kernel on CUDA.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.utils.checkpoint
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, trunc_normal_
from timm.models import register_model
from torch import nn

from attnzoo._timm import feature_take_indices
from attnzoo.backbones._checks import check_images
from attnzoo.backbones._convert import StateDict, verify_against_model
from attnzoo.backbones._family import Family, register_family
from attnzoo.layers.bilevel_routing import BiLevelRoutingAttention, GlobalAttentionLePE

__all__ = ["BiFormer", "BiFormerBlock", "convert_biformer"]


class BiFormerBlock(nn.Module):
    """``x += dwconv(x)``, then pre-norm attention and MLP residuals (channels-first in and out).

    ``topk > 0``: bi-level routing attention; ``topk == -2``: global attention with LePE (8 heads).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        topk: int,
        n_win: int = 7,
        mlp_ratio: float = 3.0,
        side_dwconv: int = 5,
        before_attn_dwconv: int = 3,
        qk_scale: float | None = None,
        drop_path: float = 0.0,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        if before_attn_dwconv > 0:
            self.pos_embed = nn.Conv2d(
                dim, dim, before_attn_dwconv, padding=before_attn_dwconv // 2, groups=dim, **dd
            )
        else:
            self.pos_embed = None
        self.norm1 = nn.LayerNorm(dim, eps=1e-6, **dd)
        if topk > 0:
            self.attn = BiLevelRoutingAttention(
                dim,
                num_heads=num_heads,
                n_win=n_win,
                qk_scale=qk_scale,
                topk=topk,
                side_dwconv=side_dwconv,
                **dd,
            )
        elif topk == -2:
            self.attn = GlobalAttentionLePE(dim, num_heads=8, side_dwconv=side_dwconv, **dd)
        else:
            raise ValueError(f"unsupported topk {topk}: released BiFormers use topk > 0 or -2")
        self.norm2 = nn.LayerNorm(dim, eps=1e-6, **dd)
        hidden = int(mlp_ratio * dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden, **dd), nn.Identity(), nn.GELU(), nn.Linear(hidden, dim, **dd)
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pos_embed is not None:
            x = x + self.pos_embed(x)
        x = x.permute(0, 2, 3, 1)
        x = x + self.drop_path(self.attn(self.norm1(x)))
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x.permute(0, 3, 1, 2)


class BiFormer(nn.Module):
    """BiFormer: conv stem (stride 4), three conv3x3-s2 + BN downsamples, four stages of blocks, then
    BatchNorm2d, global average pool and a linear classifier."""

    def __init__(
        self,
        depths: tuple[int, ...] = (2, 2, 8, 2),
        embed_dims: tuple[int, ...] = (64, 128, 256, 512),
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        head_dim: int = 32,
        n_win: int = 7,
        topks: tuple[int, ...] = (1, 4, 16, -2),
        mlp_ratios: tuple[float, ...] = (3, 3, 3, 3),
        side_dwconv: int = 5,
        before_attn_dwconv: int = 3,
        qk_scale: float | None = None,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if global_pool not in ("", "avg"):
            raise ValueError(f"global_pool must be '' or 'avg', got {global_pool!r}")
        dd = dict(device=device, dtype=dtype)
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.global_pool = global_pool
        self.embed_dims = tuple(embed_dims)
        self.num_features = self.head_hidden_size = embed_dims[-1]
        self.grad_checkpointing = False

        stem = nn.Sequential(
            nn.Conv2d(in_chans, embed_dims[0] // 2, 3, stride=2, padding=1, **dd),
            nn.BatchNorm2d(embed_dims[0] // 2, **dd),
            nn.GELU(),
            nn.Conv2d(embed_dims[0] // 2, embed_dims[0], 3, stride=2, padding=1, **dd),
            nn.BatchNorm2d(embed_dims[0], **dd),
        )
        self.downsample_layers = nn.ModuleList([stem])
        for i in range(len(embed_dims) - 1):
            self.downsample_layers.append(
                nn.Sequential(
                    nn.Conv2d(embed_dims[i], embed_dims[i + 1], 3, stride=2, padding=1, **dd),
                    nn.BatchNorm2d(embed_dims[i + 1], **dd),
                )
            )
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.stages = nn.ModuleList()
        self.feature_info = []
        cur = 0
        for i, (depth, dim) in enumerate(zip(depths, embed_dims, strict=True)):
            self.stages.append(
                nn.Sequential(
                    *[
                        BiFormerBlock(
                            dim,
                            num_heads=dim // head_dim,
                            topk=topks[i],
                            n_win=n_win,
                            mlp_ratio=mlp_ratios[i],
                            side_dwconv=side_dwconv,
                            before_attn_dwconv=before_attn_dwconv,
                            qk_scale=qk_scale,
                            drop_path=rates[cur + j],
                            **dd,
                        )
                        for j in range(depth)
                    ]
                )
            )
            cur += depth
            self.feature_info.append(dict(num_chs=dim, reduction=2 ** (i + 2), module=f"stages.{i}"))
        self.norm = nn.BatchNorm2d(embed_dims[-1], **dd)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dims[-1], num_classes, **dd) if num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        """The official init: truncated-normal (std .02) linears with zero bias, unit LayerNorms."""
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    # ----------------------------------------------------------------- timm model API
    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Norm weights and biases (1-d). The official recipe decays every >= 2-d weight (its listed
        names, ``pos_embed`` / ``cls_token``, match no parameter), so this changes nothing under timm's
        optimizer factory, which skips 1-d parameters anyway."""
        return {name for name, p in self.named_parameters() if p.ndim <= 1}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return dict(
            stem=r"^downsample_layers\.0",
            blocks=[
                (r"^stages\.(\d+)" if coarse else r"^stages\.(\d+)\.(\d+)", None),
                (r"^downsample_layers\.(\d+)", (0,)),
                (r"^norm", (99999,)),
            ],
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
            if global_pool not in ("", "avg"):
                raise ValueError(f"global_pool must be '' or 'avg', got {global_pool!r}")
            self.global_pool = global_pool
        ref = self.downsample_layers[0][0].weight
        self.head = (
            nn.Linear(self.num_features, num_classes, device=ref.device, dtype=ref.dtype)
            if num_classes > 0
            else nn.Identity()
        )

    # ----------------------------------------------------------------- forward pieces
    def _stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample_layers[i](x)
        for blk in self.stages[i]:
            if self.grad_checkpointing and torch.is_grad_enabled() and not torch.jit.is_scripting():
                x = torch.utils.checkpoint.checkpoint(blk, x, use_reentrant=False)
            else:
                x = blk(x)
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, ceil(H / 32), ceil(W / 32))`` map after the final BatchNorm."""
        check_images(x, self.in_chans, "BiFormer")
        for i in range(len(self.stages)):
            x = self._stage(i, x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == "avg":
            x = x.flatten(2).mean(-1)
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
        """Stage outputs (``indices``: last n if int, all if None) at strides 4, 8, 16, 32.

        ``norm=True`` applies the final BatchNorm to the last stage's map. Unless
        ``intermediates_only``, also returns what ``forward_features`` returns.
        """
        if output_fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NHWC', got {output_fmt!r}")
        check_images(x, self.in_chans, "BiFormer")
        last = len(self.stages) - 1
        take, max_index = feature_take_indices(len(self.stages), indices)
        n_run = max_index + 1 if stop_early else len(self.stages)
        intermediates = []
        for i in range(n_run):
            x = self._stage(i, x)
            if i in take:
                y = self.norm(x) if norm and i == last else x
                intermediates.append(y if output_fmt == "NCHW" else y.permute(0, 2, 3, 1))
        if intermediates_only:
            return intermediates
        return (self.norm(x) if n_run == last + 1 else x), intermediates

    def prune_intermediate_layers(
        self,
        indices: int | list[int] | tuple[int, ...] = 1,
        prune_norm: bool = False,
        prune_head: bool = True,
    ) -> list[int]:
        """Drop the stages after the last one ``indices`` asks for (and norm / head); return the indices."""
        take, max_index = feature_take_indices(len(self.stages), indices)
        self.stages = self.stages[: max_index + 1]
        self.downsample_layers = self.downsample_layers[: max_index + 1]
        if prune_norm or max_index + 1 < len(self.embed_dims):
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, "")
        return take


def convert_biformer(state_dict: StateDict, model: nn.Module | None = None) -> StateDict:
    """The official checkpoints (``ckpt['model']``) share attnzoo's keys: verify and pass through.

    A whole training checkpoint (what timm hands over after a URL download) is unwrapped first.
    """
    if isinstance(state_dict.get("model"), dict):
        state_dict = state_dict["model"]
    return verify_against_model({k: v for k, v in state_dict.items() if isinstance(v, torch.Tensor)}, model)


FAMILY = register_family(
    Family(
        name="biformer",
        module=__name__,
        paper="BiFormer: Vision Transformer with Bi-Level Routing Attention",
        paper_ids="arXiv:2303.08810",
        repo="https://github.com/rayleizhu/BiFormer",
        license="mit",
        converter=convert_biformer,
        cfg=dict(
            num_classes=1000,
            input_size=(3, 224, 224),
            pool_size=(7, 7),
            crop_pct=0.875,
            interpolation="bicubic",
            mean=IMAGENET_DEFAULT_MEAN,
            std=IMAGENET_DEFAULT_STD,
            fixed_input_size=False,
            first_conv="downsample_layers.0.0",
            classifier="head",
        ),
        # The official README's release links (OneDrive). All three end in ".../root/content", so they
        # are downloaded under the variant's name (attnzoo.backbones._release), not timm's URL cache name.
        releases={
            "biformer_tiny": "https://api.onedrive.com/v1.0/shares/s!AkBbczdRlZvChHEOoGkgwgQzEDlM/root/content",
            "biformer_small": "https://api.onedrive.com/v1.0/shares/s!AkBbczdRlZvChHDyM-x9KWRBZ832/root/content",
            "biformer_base": "https://api.onedrive.com/v1.0/shares/s!AkBbczdRlZvChHI_XPhoadjaNxtO/root/content",
        },
        goldens={"biformer_tiny": "biformer_tiny", "biformer_small": "biformer_small"},
        feature_cfg=dict(feature_cls="getter", out_indices=(0, 1, 2, 3)),
    )
)


def _release(name: str, top1: float, params_m: float, gflops: float) -> dict[str, Any]:
    notes = (
        f"original ImageNet-1k top-1 {top1:.1f} at 224px, {params_m} M params, {gflops} GFLOPs "
        "(official README)"
    )
    return dict(url=FAMILY.releases[name], notes=(notes,))


default_cfgs = FAMILY.default_cfgs(
    {
        "biformer_tiny.in1k": _release("biformer_tiny", 81.4, 13.1, 2.2),
        "biformer_small.in1k": _release("biformer_small", 83.8, 25.5, 4.5),
        "biformer_base.in1k": _release("biformer_base", 84.3, 56.8, 9.8),
    }
)

_COMMON = dict(head_dim=32, n_win=7, topks=(1, 4, 16, -2), mlp_ratios=(3, 3, 3, 3), side_dwconv=5)


def _create(variant: str, pretrained: bool, model_args: dict[str, Any], **kwargs: Any) -> BiFormer:
    return FAMILY.build(BiFormer, variant, pretrained, **{**_COMMON, **model_args, **kwargs})


@register_model
def biformer_tiny(pretrained: bool = False, **kwargs: Any) -> BiFormer:
    """BiFormer-T: depths 2-2-8-2, widths 64-128-256-512, top-k 1/4/16 then global attention."""
    model_args = dict(depths=(2, 2, 8, 2), embed_dims=(64, 128, 256, 512))
    return _create("biformer_tiny", pretrained, model_args, **kwargs)


@register_model
def biformer_small(pretrained: bool = False, **kwargs: Any) -> BiFormer:
    """BiFormer-S: depths 4-4-18-4, widths 64-128-256-512."""
    model_args = dict(depths=(4, 4, 18, 4), embed_dims=(64, 128, 256, 512))
    return _create("biformer_small", pretrained, model_args, **kwargs)


@register_model
def biformer_base(pretrained: bool = False, **kwargs: Any) -> BiFormer:
    """BiFormer-B: depths 4-4-18-4, widths 96-192-384-768."""
    model_args = dict(depths=(4, 4, 18, 4), embed_dims=(96, 192, 384, 768))
    return _create("biformer_base", pretrained, model_args, **kwargs)

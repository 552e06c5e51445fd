"""BiFormer (Zhu et al., CVPR 2023, arXiv:2303.08810): a 4-stage hierarchical backbone whose stages
1-3 mix tokens with bi-level routing attention and whose stage 4 uses global attention.

Same parameters and math as the official ``models/biformer.py`` (with ``ops/bra_legacy.py``), so the
released checkpoints load key for key. Beyond the official code: any input size (the official model
asserts sides divisible by the 7 x 7 region grid at every stage; here each attention layer pads its map
to whole regions and masks the padding, see :class:`attnzoo.layers.BiLevelRoutingAttention`),
``forward_intermediates`` / ``features_only`` (strides 4, 8, 16, 32), gradient checkpointing, and the
Triton routed-attention kernel on CUDA.

The official detection / segmentation backbone (``BiFormer_mm`` in ``object_detection/models_mm`` and
``semantic_segmentation/models_mm``) is the dense form (``dense_outputs=True``, forms ``'det'`` /
``'seg'``): no final norm or head, a LayerNorm2d on each stage output (``extra_norms.i``), and the
official ``auto_pad`` (``pad_mode='zeros'``: padded tokens take part in routing and attention), with
the configs' ``n_win`` (16 for COCO, 8 for ADE20K at 512 px).
"""

from __future__ import annotations

from typing import Any

import torch
from timm.layers import DropPath, LayerNorm2d, calculate_drop_path_rates, trunc_normal_
from timm.models import register_model
from torch import nn

from attnzoo.backbones._convert import StateDict, detector_backbone, model_tensors, verify_against_model
from attnzoo.backbones._family import DenseLayout, Family, Source, Weights, register_family
from attnzoo.backbones._hierarchical import HierarchicalBackbone, ModuleNames, Stage
from attnzoo.layers.bilevel_routing import BiLevelRoutingAttention, GlobalAttentionLePE

__all__ = ["BiFormer", "BiFormerBlock", "convert_biformer"]


class BiFormerBlock(nn.Module):
    """``x += dwconv(x)``, then pre-norm attention and MLP residuals (channels-first in and out).

    ``topk > 0``: bi-level routing attention (``pad_mode``: how it pads maps not divisible by ``n_win``);
    ``topk == -2``: global attention with LePE (8 heads).
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
        pad_mode: str = "mask",
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
                pad_mode=pad_mode,
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


class BiFormer(HierarchicalBackbone):
    """BiFormer: conv stem (stride 4), three conv3x3-s2 + BN downsamples, four stages of blocks, then
    BatchNorm2d, global average pool and a linear classifier.

    ``dense_outputs=True`` builds the official dense backbone instead (no final norm or head, a
    LayerNorm2d per stage output); ``pad_mode`` (``'mask'``, default, or ``'zeros'``, the official
    dense code's ``auto_pad``) goes to every routing layer.

    The official code keeps the stem as ``downsample_layers.0``; those names are kept. Weight decay:
    the official recipe decays every >= 2-d weight (its listed names, ``pos_embed`` / ``cls_token``,
    match no parameter), which the skeleton's 1-d ``no_weight_decay`` set leaves unchanged.
    """

    module_names = ModuleNames(stem=None, downsamples="downsample_layers")

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
        dense_outputs: bool = False,
        pad_mode: str = "mask",
        device=None,
        dtype=None,
    ) -> None:
        dd = dict(device=device, dtype=dtype)
        stem = nn.Sequential(
            nn.Conv2d(in_chans, embed_dims[0] // 2, 3, stride=2, padding=1, **dd),
            nn.BatchNorm2d(embed_dims[0] // 2, **dd),
            nn.GELU(),
            nn.Conv2d(embed_dims[0] // 2, embed_dims[0], 3, stride=2, padding=1, **dd),
            nn.BatchNorm2d(embed_dims[0], **dd),
        )
        downsamples = [
            nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, **dd),
                nn.BatchNorm2d(c_out, **dd),
            )
            for c_in, c_out in zip(embed_dims[:-1], embed_dims[1:], strict=True)
        ]
        rates = calculate_drop_path_rates(drop_path_rate, list(depths), stagewise=True)
        stages = [
            Stage(
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
                        drop_path=rate,
                        pad_mode=pad_mode,
                        **dd,
                    )
                    for rate in stage_rates
                ]
            )
            for i, (dim, stage_rates) in enumerate(zip(embed_dims, rates, strict=True))
        ]
        if dense_outputs:
            norm: nn.Module = nn.Identity()
            output_norms = [LayerNorm2d(w, eps=1e-6, **dd) for w in embed_dims]
            num_classes = 0
        else:
            norm, output_norms = nn.BatchNorm2d(embed_dims[-1], **dd), None
        super().__init__(
            stem=None,
            downsamples=[stem, *downsamples],
            stages=stages,
            norm=norm,
            widths=embed_dims,
            output_norms=output_norms,
            reductions=[2 ** (i + 2) for i in range(len(embed_dims))],
            in_chans=in_chans,
            num_classes=num_classes,
            global_pool=global_pool,
            drop_rate=drop_rate,
            **dd,
        )
        self.dense_outputs = dense_outputs
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


def convert_biformer(state_dict: StateDict, model: nn.Module | None = None) -> StateDict:
    """The official checkpoints (``ckpt['model']``) share attnzoo's keys: verify and pass through.

    A whole training checkpoint (what timm hands over after a URL download) is unwrapped first; an
    official detector / segmentor checkpoint gives its ``backbone.*`` entries (``extra_norms.*``
    included). Into a dense form (no final norm or head) a classifier checkpoint's ``norm.*`` /
    ``head.*`` stay behind, as with the official dense code's non-strict load.
    """
    state_dict = detector_backbone(model_tensors(state_dict))
    if model is not None and "norm.weight" not in model.state_dict():
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith(("norm.", "head."))}
    return verify_against_model(state_dict, model)


FAMILY = register_family(
    Family(
        name="biformer",
        module=__name__,
        paper="BiFormer: Vision Transformer with Bi-Level Routing Attention",
        paper_ids="arXiv:2303.08810",
        repo="https://github.com/rayleizhu/BiFormer",
        license="mit",
        citation="""@inproceedings{zhu2023biformer,
  title={BiFormer: Vision Transformer with Bi-Level Routing Attention},
  author={Zhu, Lei and Wang, Xinjiang and Ke, Zhanghan and Zhang, Wayne and Lau, Rynson},
  booktitle={Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year={2023}
}""",
        converter=convert_biformer,
        cfg=dict(
            pool_size=(7, 7),
            first_conv="downsample_layers.0.0",
            classifier="head",
        ),
        weights=tuple(
            Weights(
                model,
                "in1k",
                # The official README's release links (OneDrive); they all end in ".../root/content",
                # so attnzoo.weights.fetch caches them under the model's own name.
                (Source(url=f"https://api.onedrive.com/v1.0/shares/{share}/root/content"),),
                top1=top1,
                params_m=params_m,
                gflops=gflops,
            )
            for model, share, top1, params_m, gflops in (
                ("biformer_tiny", "s!AkBbczdRlZvChHEOoGkgwgQzEDlM", 81.4, 13.1, 2.2),
                ("biformer_small", "s!AkBbczdRlZvChHDyM-x9KWRBZ832", 83.8, 25.5, 4.5),
                ("biformer_base", "s!AkBbczdRlZvChHI_XPhoadjaNxtO", 84.3, 56.8, 9.8),
            )
        ),
        goldens={"biformer_tiny": "biformer_tiny", "biformer_small": "biformer_small"},
        dense_goldens={"biformer_tiny_dense": ("biformer_tiny", "det")},
        feature_cfg=dict(feature_cls="getter", out_indices=(0, 1, 2, 3)),
        # The official stem is downsample_layers.0; downsample_layers.i (i > 0) opens stage i; the dense
        # forms' output norms freeze with the stage they follow.
        dense=DenseLayout(
            out_indices=(0, 1, 2, 3),
            stem=r"downsample_layers\.0\.",
            stage=r"(?:downsample_layers|stages)\.(\d+)\.",
            last=r"norm\.",
            output_norms=r"extra_norms\.(\d+)\.",
            # BiFormer_mm of object_detection/ and semantic_segmentation/: the same modules and auto_pad;
            # the configs' n_win differ (COCO 16, ADE20K 8 at 512 px)
            forms={
                form: dict(dense_outputs=True, num_classes=0, n_win=n_win, pad_mode="zeros")
                for form, n_win in (("det", 16), ("seg", 8))
            },
        ),
    )
)


default_cfgs = FAMILY.default_cfgs()

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

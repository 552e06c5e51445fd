"""HaloNet: timm's ByobNet with attnzoo's HaloAttention as the self-attention layer.

The block structure comes from timm's own ``byoanet`` configs, with the ``'halo'`` layer swapped for
:class:`attnzoo.layers.HaloAttention`; parameter names are therefore timm's, and timm's released
weights load unchanged. The paper's H-series configurations are defined here.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Any

import torch
from timm.layers import make_divisible
from timm.models import register_model
from timm.models.byobnet import ByoBlockCfg, ByobNet, ByoModelCfg, SelfAttnBlock
from torch import nn

from attnzoo._timm import byoanet_model_cfgs as timm_byoa_cfgs
from attnzoo.backbones._checks import check_images
from attnzoo.backbones._convert import StateDict, verify_against_model
from attnzoo.backbones._family import DenseLayout, Family, Source, Weights, register_family
from attnzoo.layers import EcaModule, HaloAttention

__all__ = ["HaloNet", "convert_halonet"]


class HaloNet(ByobNet):
    """ByobNet whose halo layers are attnzoo's (any input size, Triton kernel on CUDA)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The input check runs before the stem's first convolution: every path (forward,
        # forward_intermediates, and timm's features_only wrapper, which runs the stem's layers itself)
        # goes through it.
        first_conv = next(m for m in self.stem.modules() if isinstance(m, nn.Conv2d))
        first_conv.register_forward_pre_hook(_check_stem_input)

    def no_weight_decay(self) -> set[str]:
        """Relative-position tables are embeddings: exclude them from weight decay."""
        return {name for name, _ in self.named_parameters() if ".pos_embed." in name}


def _check_stem_input(conv: nn.Conv2d, args: tuple[torch.Tensor, ...]) -> None:
    check_images(args[0], conv.in_channels, "HaloNet")


class HaloBottleneck(SelfAttnBlock):
    """timm's self-attention bottleneck with the paper's value expansion ``r_v``.

    With ``value_ratio`` > 1 the attention emits ``r_v`` times wider values (queries and keys keep
    the bottleneck width), and the norm and output 1x1 conv after it take that width.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        value_ratio: float = 1.0,
        layers=None,
        device=None,
        dtype=None,
        **kwargs: Any,
    ) -> None:
        super().__init__(in_chs, out_chs, stride=stride, layers=layers, device=device, dtype=dtype, **kwargs)
        if value_ratio != 1.0:
            dd = dict(device=device, dtype=dtype)
            mid = self.conv3_1x1.conv.in_channels
            wide = make_divisible(mid * value_ratio)
            self.self_attn = layers.self_attn(mid, dim_out=wide, stride=stride, qk_ratio=mid / wide, **dd)
            self.post_attn = layers.norm_act(wide, **dd)
            self.conv3_1x1 = layers.conv_norm_act(wide, out_chs, 1, apply_act=False, **dd)


def _paper_cfg(
    block: int, halo: int, value_ratio: float, bottleneck_ratio: float, stage3_depth: int, final_chs: int
) -> ByoModelCfg:
    """A HaloNet H-series model (paper Table: block b, halo h, r_v, r_b, stage-3 depth, final 1x1 width).

    No official code exists; this follows timm's ``halonet_h1`` layout (7x7 stem + max-pool, every
    stage self-attention, base widths 64/128/256/512 at strides 4/8/16/32) with stage outputs of
    ``base * r_b`` around a ``base``-wide bottleneck, heads 4/8/8/8, and values ``r_v`` times wider.
    """
    stages = zip((64, 128, 256, 512), (3, 3, stage3_depth, 3), (1, 2, 2, 2), (4, 8, 8, 8), strict=True)
    return ByoModelCfg(
        blocks=tuple(
            ByoBlockCfg(
                type=partial(HaloBottleneck, value_ratio=value_ratio),
                d=depth,
                c=int(base * bottleneck_ratio),
                s=stride,
                gs=0,
                br=1.0 / bottleneck_ratio,
                self_attn_kwargs=dict(num_heads=heads),
            )
            for base, depth, stride, heads in stages
        ),
        stem_chs=64,
        stem_type="7x7",
        stem_pool="maxpool",
        num_features=final_chs,
        self_attn_layer=HaloAttention,
        self_attn_kwargs=dict(block_size=block, halo_size=halo),
    )


# name: (block, halo, r_v, r_b, stage-3 depth, final 1x1 width (0: none), train/test size)
PAPER_VARIANTS: dict[str, tuple[int, int, float, float, int, int, int]] = {
    "h0": (8, 3, 1.0, 0.5, 7, 0, 256),
    "h1": (8, 3, 1.0, 1.0, 10, 0, 256),
    "h2": (8, 3, 1.0, 1.25, 11, 0, 256),
    "h3": (10, 3, 1.0, 1.5, 12, 1024, 320),
    "h4": (12, 2, 1.0, 3.0, 12, 1280, 384),
    "h5": (14, 2, 2.5, 2.0, 23, 1536, 448),
    "h6": (8, 4, 3.0, 2.75, 24, 1536, 512),
    "h7": (10, 3, 4.0, 3.5, 26, 2048, 600),
}


# timm layer names -> attnzoo's layers: the halo attention, and ECA that also takes an empty batch.
_ATTNZOO_LAYERS: dict[str, type[torch.nn.Module]] = {"halo": HaloAttention, "eca": EcaModule}


def _swap(layer: Any) -> Any:
    return _ATTNZOO_LAYERS.get(layer, layer) if isinstance(layer, str) else layer


def _with_attnzoo_halo(cfg: ByoModelCfg) -> ByoModelCfg:
    """A copy of a timm config whose 'halo' self-attention and 'eca' attention entries point at
    attnzoo's layers."""

    def block(b: ByoBlockCfg | tuple) -> ByoBlockCfg | tuple:
        if isinstance(b, tuple):
            return tuple(block(x) for x in b)
        return replace(b, self_attn_layer=_swap(b.self_attn_layer), attn_layer=_swap(b.attn_layer))

    return replace(
        cfg,
        blocks=tuple(block(b) for b in cfg.blocks),
        self_attn_layer=_swap(cfg.self_attn_layer),
        attn_layer=_swap(cfg.attn_layer),
    )


_TIMM_VARIANTS = ("halonet26t", "sehalonet33ts", "halonet50ts", "eca_halonext26ts")
MODEL_CFGS: dict[str, ByoModelCfg] = {
    **{f"az_{name}": _with_attnzoo_halo(timm_byoa_cfgs[name]) for name in _TIMM_VARIANTS},
    **{f"az_halonet_{h}": _paper_cfg(*spec[:6]) for h, spec in PAPER_VARIANTS.items()},
}


def convert_halonet(state_dict: StateDict, model: torch.nn.Module | None = None) -> StateDict:
    """timm's HaloNet checkpoints already use attnzoo's keys: verify and pass through."""
    return verify_against_model(dict(state_dict), model)


_TIMM_RELEASE = "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-attn-weights/"

FAMILY = register_family(
    Family(
        name="halonet",
        module=__name__,
        paper="Scaling Local Self-Attention for Parameter Efficient Visual Backbones",
        paper_ids="arXiv:2103.12731",
        repo="https://github.com/huggingface/pytorch-image-models",
        license="apache-2.0",
        citation="""@inproceedings{vaswani2021scaling,
  title={Scaling Local Self-Attention for Parameter Efficient Visual Backbones},
  author={Vaswani, Ashish and Ramachandran, Prajit and Srinivas, Aravind and Parmar, Niki and
          Hechtman, Blake and Shlens, Jonathon},
  booktitle={Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages={12894--12904},
  year={2021}
}""",
        converter=convert_halonet,
        cfg=dict(
            input_size=(3, 256, 256),
            pool_size=(8, 8),
            crop_pct=0.94,
            first_conv="stem.conv1.conv",
            classifier="head.fc",
        ),
        weights=(
            # timm's releases: its Hub repos hold them as safetensors, its GitHub release as the original.
            *(
                Weights(
                    f"az_{model}",
                    tag,
                    (Source(hf_hub_id=f"timm/{model}.{tag}"), Source(url=_TIMM_RELEASE + file)),
                    top1=top1,
                    params_m=dict(
                        halonet26t=12.48, sehalonet33ts=13.69, halonet50ts=22.73, eca_halonext26ts=10.76
                    )[model],
                    reported_by="timm",
                    cfg=cfg,
                )
                for model, tag, file, top1, cfg in (
                    ("halonet26t", "a1h_in1k", "halonet26t_a1h_256-3083328c.pth", 79.13, dict(crop_pct=0.95)),
                    ("sehalonet33ts", "ra2_in1k", "sehalonet33ts_256-87e053f9.pth", 80.99, {}),
                    ("halonet50ts", "a1h_in1k", "halonet50ts_a1h2_256-f3a3daee.pth", 81.70, {}),
                    ("eca_halonext26ts", "c1_in1k", "eca_halonext26ts_c_256-06906299.pth", 79.50, {}),
                )
            ),
            # The paper's H-series, evaluated at its train / test size.
            *(
                Weights(
                    f"az_halonet_{h}",
                    "untrained",
                    params_m=dict(h0=5.5, h1=8.1, h2=9.4, h3=11.8, h4=19.1, h5=30.7, h6=43.4, h7=67.4)[h],
                    reported_by="paper (H-series table)",
                    cfg=dict(input_size=(3, size, size), pool_size=(size // 32, size // 32), crop_pct=1.0),
                    notes=("no weights released: the paper's H-series has no official code or checkpoints",),
                )
                for h, (*_, size) in PAPER_VARIANTS.items()
            ),
        ),
        goldens={"halonet26t": "az_halonet26t"},
        feature_cfg=dict(flatten_sequential=True),
        # feature_info 0 is the stem's stride-2 map; final_conv (after stages.3) is the last stage's output.
        dense=DenseLayout(
            out_indices=(1, 2, 3, 4),
            stem=r"stem\.",
            stage=r"stages\.(\d+)\.",
            last=r"final_conv\.",
            first_stage=1,
        ),
    )
)


def _create(variant: str, pretrained: bool = False, **kwargs: Any) -> HaloNet:
    return FAMILY.build(HaloNet, variant, pretrained, model_cfg=MODEL_CFGS[variant], **kwargs)


default_cfgs = FAMILY.default_cfgs()


@register_model
def az_halonet26t(pretrained: bool = False, **kwargs: Any) -> HaloNet:
    """HaloNet-26t (timm): tiered stem, halo attention in stages 3-4, block 8, halo 2."""
    return _create("az_halonet26t", pretrained, **kwargs)


@register_model
def az_sehalonet33ts(pretrained: bool = False, **kwargs: Any) -> HaloNet:
    """SE-HaloNet-33ts (timm): SiLU, squeeze-excite, block 8, halo 3."""
    return _create("az_sehalonet33ts", pretrained, **kwargs)


@register_model
def az_halonet50ts(pretrained: bool = False, **kwargs: Any) -> HaloNet:
    """HaloNet-50ts (timm): ResNet-50 layout with halo blocks interleaved, SiLU."""
    return _create("az_halonet50ts", pretrained, **kwargs)


@register_model
def az_eca_halonext26ts(pretrained: bool = False, **kwargs: Any) -> HaloNet:
    """ECA-HaloNeXt-26ts (timm): grouped convs, ECA attention, head dim 16."""
    return _create("az_eca_halonext26ts", pretrained, **kwargs)


@register_model
def az_halonet_h0(pretrained: bool = False, **kwargs: Any) -> HaloNet:
    """HaloNet-H0 from the paper's table (block 8, halo 3, r_b 0.5); no released weights."""
    return _create("az_halonet_h0", pretrained, **kwargs)


@register_model
def az_halonet_h1(pretrained: bool = False, **kwargs: Any) -> HaloNet:
    """HaloNet-H1 from the paper's table (block 8, halo 3); no released weights."""
    return _create("az_halonet_h1", pretrained, **kwargs)


@register_model
def az_halonet_h2(pretrained: bool = False, **kwargs: Any) -> HaloNet:
    """HaloNet-H2 from the paper's table (block 8, halo 3, r_b 1.25); no released weights."""
    return _create("az_halonet_h2", pretrained, **kwargs)


@register_model
def az_halonet_h3(pretrained: bool = False, **kwargs: Any) -> HaloNet:
    """HaloNet-H3 from the paper's table (block 10, halo 3, r_b 1.5); no released weights."""
    return _create("az_halonet_h3", pretrained, **kwargs)


@register_model
def az_halonet_h4(pretrained: bool = False, **kwargs: Any) -> HaloNet:
    """HaloNet-H4 from the paper's table (block 12, halo 2, r_b 3); no released weights."""
    return _create("az_halonet_h4", pretrained, **kwargs)


@register_model
def az_halonet_h5(pretrained: bool = False, **kwargs: Any) -> HaloNet:
    """HaloNet-H5 from the paper's table (block 14, halo 2, r_v 2.5, r_b 2); no released weights."""
    return _create("az_halonet_h5", pretrained, **kwargs)


@register_model
def az_halonet_h6(pretrained: bool = False, **kwargs: Any) -> HaloNet:
    """HaloNet-H6 from the paper's table (block 8, halo 4, r_v 3, r_b 2.75); no released weights."""
    return _create("az_halonet_h6", pretrained, **kwargs)


@register_model
def az_halonet_h7(pretrained: bool = False, **kwargs: Any) -> HaloNet:
    """HaloNet-H7 from the paper's table (block 10, halo 3, r_v 4, r_b 3.5); no released weights."""
    return _create("az_halonet_h7", pretrained, **kwargs)

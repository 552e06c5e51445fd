"""MALA (Fan et al., "Rectifying Magnitude Neglect in Linear Attention", ICCV 2025, arXiv:2507.00698):
a 4-stage conv-transformer whose stages 1-2 mix tokens with magnitude-aware linear attention and whose
stages 3-4 use softmax attention in the same gated, RoPE'd frame (:mod:`attnzoo.layers.mala`).

Same math and parameters as the official ``classfication_release/model.py`` (variants ``MALA_T/S/B/L``,
registered lower-case), on the hierarchical skeleton: official checkpoints convert on load
(:func:`convert_mala` renames ``layers.i.blocks.j`` -> ``stages.i.j``, the stage-end downsamples to the
next stage's ``downsamples``, and the classifier's conv head). The official detection / segmentation
backbone (``detect/`` and ``segmentation/``: no head, a LayerNorm on each stage output) is the dense form
``'det'`` (= ``'seg'``). Beyond the official code: ``features_only`` / ``forward_intermediates`` (strides
4, 8, 16, 32), gradient checkpointing, and the Triton linear-attention kernel on CUDA.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from timm.layers import ConvNormAct, DropPath, LayerNorm2d, calculate_drop_path_rates, trunc_normal_
from timm.models import register_model
from torch import nn

from attnzoo.backbones._convert import StateDict, detector_backbone, model_tensors, verify_against_model
from attnzoo.backbones._family import DenseLayout, Family, Source, Weights, register_family
from attnzoo.backbones._hierarchical import HierarchicalBackbone, ModuleNames, Stage
from attnzoo.layers.mala import MagnitudeAwareLinearAttention, RoPESoftmaxAttention
from attnzoo.layers.rope import rope_2d_frequencies

__all__ = ["MALA", "MALABlock", "convert_mala"]

_MIXERS = {"linear": MagnitudeAwareLinearAttention, "softmax": RoPESoftmaxAttention}


class ConvFFN(nn.Module):
    """1x1 conv -> GELU -> (+ depthwise 3x3 conv residual) -> 1x1 conv (official ``FeedForwardNetwork``)."""

    def __init__(self, dim: int, hidden: int, device=None, dtype=None) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.fc1 = nn.Conv2d(dim, hidden, 1, **dd)
        self.act = nn.GELU()
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, **dd)
        self.fc2 = nn.Conv2d(hidden, dim, 1, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.fc1(x))
        return self.fc2(x + self.dwconv(x))


class MALABlock(nn.Module):
    """``x += dwconv3x3(x)``; then pre-norm attention and FFN residuals, each times a ``(1, C, 1, 1)``
    layer scale (``layer_scale=None``: none). Channels-first in and out."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mixer: str,
        mlp_ratio: float = 3.5,
        layer_scale: float | None = 1.0,
        drop_path: float = 0.0,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.pos = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, **dd)
        self.norm1 = LayerNorm2d(dim, eps=1e-6, **dd)
        self.attn = _MIXERS[mixer](dim, num_heads, **dd)
        self.norm2 = LayerNorm2d(dim, eps=1e-6, **dd)
        self.ffn = ConvFFN(dim, int(mlp_ratio * dim), **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        if layer_scale is None:
            self.gamma_1 = self.gamma_2 = None
        else:
            self.gamma_1 = nn.Parameter(torch.full((1, dim, 1, 1), float(layer_scale), **dd))
            self.gamma_2 = nn.Parameter(torch.full((1, dim, 1, 1), float(layer_scale), **dd))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos(x)
        y = self.attn(self.norm1(x))
        x = x + self.drop_path(y if self.gamma_1 is None else self.gamma_1 * y)
        y = self.ffn(self.norm2(x))
        return x + self.drop_path(y if self.gamma_2 is None else self.gamma_2 * y)


def _conv_bn(c_in: int, c_out: int, stride: int, device=None, dtype=None) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, device=device, dtype=dtype),
        nn.BatchNorm2d(c_out, device=device, dtype=dtype),
    ]


class _Downsample(nn.Module):
    """conv 3x3 stride 2 -> BatchNorm (official ``PatchMerging``: ``reduction``, ``norm``)."""

    def __init__(self, c_in: int, c_out: int, device=None, dtype=None) -> None:
        super().__init__()
        self.reduction, self.norm = _conv_bn(c_in, c_out, 2, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.reduction(x))


class MALA(HierarchicalBackbone):
    """MALA: a conv stem (stride 4: conv-BN-GELU x 3, conv-BN), four stages (conv 3x3-s2 + BN between
    them), then a conv head (1x1 conv to ``projection`` channels -> BN -> SiLU, timm's EfficientNet
    ``conv_head`` place: in ``forward_features``), average pool and a linear classifier.

    ``mixers``: per stage, ``'linear'`` (magnitude-aware linear attention) or ``'softmax'``; the official
    default is linear in stages 1-2, softmax in 3-4 (every released variant). ``layer_scales``: per stage
    the initial layer-scale value, or None for no layer scale.

    ``dense_outputs=True`` builds the official detection / segmentation backbone instead: no conv head
    or classifier, and a LayerNorm (eps 1e-6, ``extra_norms.i``) on each stage's output.
    """

    module_names = ModuleNames(stem="patch_embed", downsamples="downsamples", output_norms="extra_norms")

    def __init__(
        self,
        depths: tuple[int, ...] = (2, 2, 6, 2),
        embed_dims: tuple[int, ...] = (64, 128, 256, 512),
        num_heads: tuple[int, ...] = (1, 2, 4, 8),
        mixers: tuple[str, ...] = ("linear", "linear", "softmax", "softmax"),
        mlp_ratios: tuple[float, ...] = (3.5, 3.5, 3.5, 3.5),
        layer_scales: tuple[float | None, ...] = (1.0, 1.0, 1.0, 1.0),
        projection: int = 2048,
        dense_outputs: bool = False,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        device=None,
        dtype=None,
    ) -> None:
        dd = dict(device=device, dtype=dtype)
        for name, values in (("num_heads", num_heads), ("mixers", mixers), ("mlp_ratios", mlp_ratios)):
            if len(values) != len(depths):
                raise ValueError(f"{name} needs one entry per stage ({len(depths)}), got {values}")
        if bad := [m for m in mixers if m not in _MIXERS]:
            raise ValueError(f"unknown mixer(s) {bad}; MALA stages use {sorted(_MIXERS)}")
        half = embed_dims[0] // 2
        stem = nn.Sequential()
        stem.proj = nn.Sequential(
            *_conv_bn(in_chans, half, 2, **dd),
            nn.GELU(),
            *_conv_bn(half, half, 1, **dd),
            nn.GELU(),
            *_conv_bn(half, half, 1, **dd),
            nn.GELU(),
            *_conv_bn(half, embed_dims[0], 2, **dd),
        )
        downsamples = [nn.Identity()] + [
            _Downsample(c_in, c_out, **dd)
            for c_in, c_out in zip(embed_dims[:-1], embed_dims[1:], strict=True)
        ]
        rates = calculate_drop_path_rates(drop_path_rate, list(depths), stagewise=True)
        stages = [
            Stage(
                *[
                    MALABlock(
                        embed_dims[i],
                        num_heads[i],
                        mixers[i],
                        mlp_ratios[i],
                        layer_scales[i],
                        drop_path=rate,
                        **dd,
                    )
                    for rate in rates[i]
                ]
            )
            for i in range(len(depths))
        ]
        if dense_outputs:
            norm: nn.Module = nn.Identity()
            output_norms = [LayerNorm2d(w, eps=1e-6, **dd) for w in embed_dims]
            num_classes, projection = 0, embed_dims[-1]
        else:
            norm = ConvNormAct(embed_dims[-1], projection, 1, bias=True, act_layer=nn.SiLU, **dd)
            output_norms = None
        super().__init__(
            stem=stem,
            downsamples=downsamples,
            stages=stages,
            norm=norm,
            widths=embed_dims,
            reductions=[2 ** (i + 2) for i in range(len(embed_dims))],
            num_features=projection,
            output_norms=output_norms,
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
        """The official init: truncated-normal (std .02) convs with zero bias; linears as the head's conv."""
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


# Official key -> attnzoo key where the names differ: the skeleton's stages / downsamples, timm's
# LayerNorm2d (no inner ``.norm``) and ConvNormAct (the classifier's conv head).
_STAGE_RENAMES = (
    (re.compile(r"^layers\.(\d+)\.blocks\.(\d+)\."), lambda m: f"stages.{m[1]}.{m[2]}."),
    (re.compile(r"^layers\.(\d+)\.downsample\."), lambda m: f"downsamples.{int(m[1]) + 1}."),
)
_INNER_NORM = re.compile(r"^(.*\.norm[12]|extra_norms\.\d+)\.norm\.")
_HEAD_RENAMES = {"proj.": "norm.conv.", "norm.": "norm.bn."}
_ROPE_TABLE = re.compile(r"^layers\.\d+\.RoPE\.angle$")


def _rename(key: str) -> str:
    for pattern, new in _STAGE_RENAMES:
        key = pattern.sub(new, key, count=1)
    key = _INNER_NORM.sub(lambda m: f"{m[1]}.", key, count=1)
    for old, new in _HEAD_RENAMES.items():
        if key.startswith(old):
            return new + key.removeprefix(old)
    return key


def convert_mala(state_dict: StateDict, model: nn.Module | None = None) -> StateDict:
    """An official MALA checkpoint (classifier, or a detector / segmentor's ``backbone.*``) -> attnzoo keys.

    The official per-stage ``RoPE.angle`` buffers are not parameters here (the tables are rebuilt from
    the head width); a checkpoint whose tables differ from that rule is refused. The classifier's
    1x1-conv head becomes the linear head. Keys already in attnzoo's naming pass through.
    """
    state_dict = detector_backbone(model_tensors(state_dict))
    if not any(k.startswith("layers.") for k in state_dict):
        return verify_against_model(state_dict, model)  # not an official checkpoint (attnzoo's keys)
    out: StateDict = {}
    for key, value in state_dict.items():
        if _ROPE_TABLE.match(key):
            head_dim = 2 * value.numel()
            if not torch.allclose(value.float(), rope_2d_frequencies(head_dim), rtol=1e-6, atol=0):
                raise ValueError(f"{key} is not MALA's 2-D RoPE table for head_dim {head_dim}")
            continue
        if key == "head.weight" and value.ndim == 4:
            value = value.flatten(1)
        out[_rename(key)] = value
    if model is not None and "norm.conv.weight" not in model.state_dict():
        # a dense form (no conv head): the classifier's head stays behind
        out = {k: v for k, v in out.items() if not k.startswith(("norm.", "head."))}
    return verify_against_model(out, model)


FAMILY = register_family(
    Family(
        name="mala",
        module=__name__,
        paper="Rectifying Magnitude Neglect in Linear Attention",
        paper_ids="arXiv:2507.00698",
        repo="https://github.com/qhfan/MALA",
        # The official repository carries no licence file: its weights are linked, never re-hosted.
        license="unknown",
        citation="""@inproceedings{fan2024rect,
  title={Rectifying Magnitude Neglect in Linear Attention},
  author={Qihang Fan and Huaibo Huang and Yuang Ai and Ran He},
  booktitle={ICCV},
  year={2025}
}""",
        converter=convert_mala,
        cfg=dict(pool_size=(7, 7), crop_pct=0.9, first_conv="patch_embed.proj.0", classifier="head"),
        weights=tuple(
            Weights(
                f"mala_{size.lower()}",
                "in1k",
                (Source(hf_hub_id="aldjalkdf/MAViT", filename=f"MALA_{size}.pth"),),
                # The README states no counts; the paper's abstract states S's (27M).
                params_m={"S": 27}.get(size),
                reported_by="paper",
                notes=(
                    "official weights on the Hub (aldjalkdf/MAViT, linked from the official README); the "
                    "repository has no licence file, so attnzoo links them and never re-hosts them",
                    f"file name MALA_{size}.pth assumed: the README names no files; it follows the authors' "
                    "naming on their other Hub releases (e.g. aldjalkdf/RAVLT's RAVLT_T.pth)",
                ),
            )
            for size in ("T", "S", "B", "L")
        ),
        goldens={"mala_t": "mala_t", "mala_s": "mala_s"},
        dense_goldens={"mala_t_det": ("mala_t", "det")},
        feature_cfg=dict(feature_cls="getter", out_indices=(0, 1, 2, 3)),
        # downsamples.i (i > 0) opens stage i (the official code ends stage i - 1 with it); the extra
        # norms of the dense form freeze with the stage they follow.
        dense=DenseLayout(
            out_indices=(0, 1, 2, 3),
            stem=r"patch_embed\.",
            stage=r"(?:downsamples|stages)\.(\d+)\.",
            last=r"norm\.",
            output_norms=r"extra_norms\.(\d+)\.",
            # detect/ and segmentation/ build the same backbone
            forms={form: dict(dense_outputs=True, num_classes=0) for form in ("det", "seg")},
        ),
    )
)

default_cfgs = FAMILY.default_cfgs()

_VARIANTS: dict[str, dict[str, Any]] = {
    "t": dict(depths=(2, 2, 6, 2), embed_dims=(64, 128, 256, 512), num_heads=(1, 2, 4, 8)),
    "s": dict(depths=(3, 5, 9, 3), embed_dims=(64, 128, 320, 512), num_heads=(1, 2, 5, 8)),
    "b": dict(
        depths=(4, 6, 12, 6),
        embed_dims=(96, 192, 384, 512),
        num_heads=(1, 2, 6, 8),
        layer_scales=(1.0, 1.0, 1e-6, 1e-6),
    ),
    "l": dict(
        depths=(4, 7, 19, 8),
        embed_dims=(96, 192, 448, 640),
        num_heads=(1, 2, 7, 10),
        layer_scales=(1e-6,) * 4,
        projection=2560,
    ),
}


def _create(size: str, pretrained: bool, **kwargs: Any) -> MALA:
    return FAMILY.build(MALA, f"mala_{size}", pretrained, **{**_VARIANTS[size], **kwargs})


@register_model
def mala_t(pretrained: bool = False, **kwargs: Any) -> MALA:
    """MALA-T: depths 2-2-6-2, widths 64-128-256-512, head width 64."""
    return _create("t", pretrained, **kwargs)


@register_model
def mala_s(pretrained: bool = False, **kwargs: Any) -> MALA:
    """MALA-S: depths 3-5-9-3, widths 64-128-320-512."""
    return _create("s", pretrained, **kwargs)


@register_model
def mala_b(pretrained: bool = False, **kwargs: Any) -> MALA:
    """MALA-B: depths 4-6-12-6, widths 96-192-384-512, layer scale 1e-6 in stages 3-4."""
    return _create("b", pretrained, **kwargs)


@register_model
def mala_l(pretrained: bool = False, **kwargs: Any) -> MALA:
    """MALA-L: depths 4-7-19-8, widths 96-192-448-640, head 2560 channels, layer scale 1e-6."""
    return _create("l", pretrained, **kwargs)

"""OverLoCK (Lou & Yu, CVPR 2025, arXiv:2502.20087): an Overview-first-Look-Closely-next ConvNet.

Three sub-networks: a Base-Net (stem and stages 1-3 of re-parameterisable large-kernel conv blocks), a
light Overview-Net (stage 4 on top of stage 3) whose coarse map is the context prior, and a Focus-Net
that re-runs stages 3 and 4 with ContMix blocks (:class:`attnzoo.layers.ContMix`): dynamic kernels
guided by the context, which travels beside the features (``C / 4`` channels of the Overview-Net map)
and is refreshed by every block. The classifier head is conv 1x1 -> BN -> SiLU -> pool -> conv 1x1.

Same parameters and math as the official ``models/overlock.py`` (state-dict keys kept), so the
released checkpoints load; ``overlock_*_reparam`` are the official deployment structures (every
:class:`~attnzoo.layers.DilatedReparamBlock` folded; ``timm.utils.reparameterize_model`` turns a
training model into one exactly). Differences: the training-only auxiliary head (``aux_head``, deep
supervision on the Overview-Net) is not built and its checkpoint keys are dropped; the ContMix
aggregation runs the Triton kernel on CUDA; any input size (maps below the ContMix window are resized
as in the official code); ``dense_outputs='det' | 'seg'`` gives the official detection / segmentation
backbones (see :class:`OverLoCK`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import (
    DropPath,
    LayerNorm2d,
    get_device_dtype,
    register_notrace_function,
    register_notrace_module,
    trunc_normal_,
)
from timm.models import register_model
from torch import nn
from torch.utils.checkpoint import checkpoint

from attnzoo._timm import feature_take_indices
from attnzoo.backbones._checks import check_global_pool, check_images, check_output_fmt
from attnzoo.backbones._convert import StateDict, detector_backbone, model_tensors, verify_against_model
from attnzoo.backbones._family import DenseLayout, Family, Source, Weights, register_family
from attnzoo.backbones._hierarchical import Stage
from attnzoo.layers.contmix import ContMix
from attnzoo.layers.reparam import DilatedReparamBlock

__all__ = ["OverLoCK", "convert_overlock"]

DENSE_FORMS = ("det", "seg")


def _norm(dim: int, **dd) -> nn.Module:
    return LayerNorm2d(dim, eps=1e-6, **dd)


class ChannelScale(nn.Module):
    """OverLoCK's layer scale: a per-channel scale and bias (a depthwise 1x1 conv, weight ``[C,1,1,1]``)."""

    def __init__(self, dim: int, init_value: float, device=None, dtype=None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((dim, 1, 1, 1), float(init_value), device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(dim, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, groups=x.shape[1])


class GRN(nn.Module):
    """ConvNeXt-V2 global response norm on NCHW maps, with OverLoCK's ``[1, C, 1, 1]`` gamma / beta."""

    def __init__(self, dim: int, device=None, dtype=None) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, dim, 1, 1, device=device, dtype=dtype))
        self.beta = nn.Parameter(torch.zeros(1, dim, 1, 1, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gx = torch.linalg.vector_norm(x, dim=(-1, -2), keepdim=True)
        nx = gx / (gx.mean(dim=1, keepdim=True) + 1e-6)
        return (self.gamma * nx + 1) * x + self.beta


class SqueezeExcite(nn.Module):
    """Channel gate: pool -> conv -> GELU -> conv -> sigmoid, hidden ``max(16, C / 8)`` (keys ``proj.*``)."""

    def __init__(self, dim: int, device=None, dtype=None) -> None:
        super().__init__()
        hidden = max(16, dim // 8)
        self.proj = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(dim, hidden, 1, device=device, dtype=dtype),
            nn.GELU(),
            nn.Conv2d(hidden, dim, 1, device=device, dtype=dtype),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.proj(x)


class ResDWConv(nn.Conv2d):
    """``x + dwconv3x3(x)``."""

    def __init__(self, dim: int, device=None, dtype=None) -> None:
        super().__init__(dim, dim, 3, padding=1, groups=dim, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + super().forward(x)


def _layer_scale(dim: int, init_value: float | None, **dd) -> nn.Module:
    return nn.Identity() if init_value is None else ChannelScale(dim, init_value, **dd)


def _conv_bn(c_in: int, c_out: int, stride: int = 1, kernel_size: int = 1, **dd) -> list[nn.Module]:
    pad = kernel_size // 2
    return [nn.Conv2d(c_in, c_out, kernel_size, stride, pad, bias=False, **dd), nn.BatchNorm2d(c_out, **dd)]


def _mlp(dim: int, hidden: int, out: int, **dd) -> list[nn.Module]:
    """conv 1x1 -> GELU -> residual dwconv -> GRN -> conv 1x1, the ConvNeXt-V2 style MLP of both blocks."""
    return [
        nn.Conv2d(dim, hidden, 1, **dd),
        nn.GELU(),
        ResDWConv(hidden, **dd),
        GRN(hidden, **dd),
        nn.Conv2d(hidden, out, 1, **dd),
    ]


class RepConvBlock(nn.Module):
    """Base-Net / Overview-Net block: ``x += dwconv(x)``, then ``x = ls(x) + proj(x)`` where proj is
    LN -> dilated re-param conv -> BN -> SE -> MLP (the official ``res_scale=True`` form)."""

    def __init__(
        self,
        dim: int,
        kernel_size: int,
        mlp_ratio: float = 4.0,
        ls_init_value: float | None = None,
        drop_path: float = 0.0,
        deploy: bool = False,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.dwconv = ResDWConv(dim, **dd)
        self.proj = nn.Sequential(
            _norm(dim, **dd),
            DilatedReparamBlock(dim, kernel_size, deploy=deploy, **dd),
            nn.BatchNorm2d(dim, **dd),
            SqueezeExcite(dim, **dd),
            *_mlp(dim, int(dim * mlp_ratio), dim, **dd),
            DropPath(drop_path) if drop_path > 0 else nn.Identity(),
        )
        self.ls = _layer_scale(dim, ls_init_value, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dwconv(x)
        return self.ls(x) + self.proj(x)


@register_notrace_module  # ContMix branches on the map size: torch.fx keeps the block as one call
class DynamicConvBlock(ContMix):
    """Focus-Net block on ``[x, context]``: the context is refreshed from the Overview guide
    (``x_scale(ctx) + h_scale(guide)``, except in a stage's first block), joined to x, and the block
    runs a ContMix mixer with LePE, SE and a SiLU gate, then an MLP, both with layer-scaled shortcuts.

    Takes and returns the joined map ``[x, ctx]`` (the official blocks split it between blocks; one
    map keeps the stage's output a single tensor for hooks and torch.fx).
    """

    def __init__(
        self,
        dim: int,
        ctx_dim: int,
        kernel_size: int,
        smk_size: int = 5,
        num_heads: int = 4,
        mlp_ratio: float = 3.0,
        ls_init_value: float | None = 1.0,
        drop_path: float = 0.0,
        is_first: bool = False,
        deploy: bool = False,
        device=None,
        dtype=None,
    ) -> None:
        dd = dict(device=device, dtype=dtype)
        ctx_dim = ctx_dim // 4
        super().__init__(dim, ctx_dim, kernel_size, smk_size, groups=2 * num_heads, **dd)
        out_dim = dim + ctx_dim
        self.dim, self.is_first = dim, is_first
        if not is_first:
            self.x_scale = ChannelScale(ctx_dim, 1.0, **dd)
            self.h_scale = ChannelScale(ctx_dim, 1.0, **dd)
        self.dwconv1 = ResDWConv(out_dim, **dd)
        self.norm1 = _norm(out_dim, **dd)
        self.fusion = nn.Sequential(
            nn.Conv2d(out_dim, out_dim, 3, padding=1, groups=out_dim, **dd),
            nn.BatchNorm2d(out_dim, **dd),
            nn.GELU(),
            nn.Conv2d(out_dim, dim, 1, **dd),
            GRN(dim, **dd),
        )
        self.dyconv_proj = nn.Sequential(*_conv_bn(dim, dim, **dd))
        self.lepe = nn.Sequential(
            DilatedReparamBlock(dim, kernel_size, deploy=deploy, **dd), nn.BatchNorm2d(dim, **dd)
        )
        self.se_layer = SqueezeExcite(dim, **dd)
        self.gate = nn.Sequential(*_conv_bn(dim, dim, **dd), nn.SiLU())
        self.proj = nn.Sequential(nn.BatchNorm2d(dim, **dd), nn.Conv2d(dim, out_dim, 1, **dd))
        self.dwconv2 = ResDWConv(out_dim, **dd)
        self.norm2 = _norm(out_dim, **dd)
        self.mlp = nn.Sequential(*_mlp(out_dim, int(dim * mlp_ratio), out_dim, **dd))
        self.ls1 = _layer_scale(out_dim, ls_init_value, **dd)
        self.ls2 = _layer_scale(out_dim, ls_init_value, **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, joined: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        if not self.is_first:
            ctx = self.x_scale(joined[:, self.dim :]) + self.h_scale(guide)
            joined = torch.cat([joined[:, : self.dim], ctx], dim=1)
        joined = self.dwconv1(joined)
        normed = self.norm1(joined)
        x = self.fusion(normed)
        gate = self.gate(x)
        lepe = self.lepe(x)
        x = self.mix(x, normed[:, : self.dim], normed[:, self.dim :])
        x = self.proj(gate * self.se_layer(self.dyconv_proj(x) + lepe))
        x = self.ls1(joined) + self.drop_path(x)
        x = self.dwconv2(x)
        return self.ls2(x) + self.drop_path(self.mlp(self.norm2(x)))


class FocusStage(nn.ModuleList):
    """A Focus-Net stage: its blocks refine the joined map ``[x, ctx]`` under one guide; returns it
    (the stage's feature), with optional per-block checkpointing."""

    def __init__(self, blocks: list[DynamicConvBlock]) -> None:
        super().__init__(blocks)
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor, ctx: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        joined = torch.cat([x, ctx], dim=1)
        for block in self:
            if self.grad_checkpointing and torch.is_grad_enabled():
                joined = checkpoint(block, joined, guide, use_reentrant=False)
            else:
                joined = block(joined, guide)
        return joined


class ContextDownsample(nn.Module):
    """Stride-2 conv + BN on x (to the next width) and on the context (width kept)."""

    def __init__(self, dim: int, out_dim: int, device=None, dtype=None) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.x_proj = nn.Sequential(*_conv_bn(dim, out_dim, 2, 3, **dd))
        self.h_proj = nn.Sequential(*_conv_bn(out_dim // 4, out_dim // 4, 2, 3, **dd))

    def forward(self, x: torch.Tensor, ctx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x_proj(x), self.h_proj(ctx)


@register_notrace_function  # the target size is the reference map's: data-dependent under torch.fx
def _resize_like(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=ref.shape[2:], mode="bilinear", align_corners=False)


def _stem(in_chans: int, dim: int, **dd) -> nn.Sequential:
    return nn.Sequential(
        *_conv_bn(in_chans, dim // 2, 2, 3, **dd),
        nn.GELU(),
        *_conv_bn(dim // 2, dim // 2, 1, 3, **dd),
        nn.GELU(),
        *_conv_bn(dim // 2, dim, 2, 3, **dd),
        nn.GELU(),
        *_conv_bn(dim, dim, 1, 3, **dd),
    )


class OverLoCK(nn.Module):
    """OverLoCK with timm's model API; official module names.

    Features (``feature_info``): stage 1 (``blocks1``, stride 4), stage 2 (``blocks2``, 8), the
    Focus-Net stage 3 map joined with its context (``sub_blocks3``, 16, ``C3 + C4 / 4`` channels)
    and the final Focus-Net map (``sub_blocks4``, 32, ``C4 + C4 / 4``). ``forward_features`` adds the
    head's conv 1x1 -> BN -> SiLU (``projection`` channels), like timm's EfficientNet ``conv_head``;
    ``forward_head`` pools and classifies.

    ``dense_outputs``: ``'det'`` / ``'seg'`` build the official detection / segmentation backbone
    instead of the classifier (no head): a LayerNorm on each of the four features (``extra_norm.i``),
    the normed stage-2 map fed on to stage 3 (as the official dense code does), and for ``'det'`` the
    last feature plus ``h_proj(extra_norm.4(overview context))`` (a conv 1x1 with a 1e-5 layer scale).
    """

    def __init__(
        self,
        depth: tuple[int, ...] = (2, 2, 2, 2),
        sub_depth: tuple[int, ...] = (4, 2),
        embed_dim: tuple[int, ...] = (96, 192, 384, 768),
        kernel_size: tuple[int, ...] = (7, 7, 7, 7),
        mlp_ratio: tuple[float, ...] = (4, 4, 4, 4),
        sub_mlp_ratio: tuple[float, ...] = (4, 4),
        sub_num_heads: tuple[int, ...] = (4, 8),
        ls_init_value: tuple[float | None, ...] = (None, None, 1, 1),
        smk_size: int = 5,
        deploy: bool = False,
        projection: int = 1024,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        dense_outputs: str | None = None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if dense_outputs not in (None, *DENSE_FORMS):
            raise ValueError(f"dense_outputs must be None, 'det' or 'seg', got {dense_outputs!r}")
        if dense_outputs is not None and num_classes:
            raise ValueError(f"the dense form ({dense_outputs!r}) has no classifier: pass num_classes=0")
        dd = dict(device=device, dtype=dtype)
        c1, c2, c3, c4 = embed_dim
        ctx = c4 // 4
        self.in_chans, self.num_classes, self.global_pool = (
            in_chans,
            num_classes,
            check_global_pool(global_pool),
        )
        self.dense_outputs = dense_outputs
        self.widths = (c1, c2, c3 + ctx, c4 + ctx)
        self.feature_info = [
            dict(num_chs=ch, reduction=r, module=m)
            for ch, r, m in zip(
                self.widths, (4, 8, 16, 32), ("blocks1", "blocks2", "sub_blocks3", "sub_blocks4"), strict=True
            )
        ]
        n_blocks = sum(depth) + sum(sub_depth)
        rates = iter(drop_path_rate * i / max(n_blocks - 1, 1) for i in range(n_blocks))

        def base_stage(i: int) -> Stage:
            return Stage(
                *[
                    RepConvBlock(
                        embed_dim[i],
                        kernel_size[i],
                        mlp_ratio[i],
                        ls_init_value[i],
                        next(rates),
                        deploy,
                        **dd,
                    )
                    for _ in range(depth[i])
                ]
            )

        def focus_stage(j: int) -> FocusStage:
            i = j + 2
            return FocusStage(
                [
                    DynamicConvBlock(
                        embed_dim[i],
                        c4,
                        kernel_size[i],
                        smk_size,
                        sub_num_heads[j],
                        sub_mlp_ratio[j],
                        ls_init_value[i],
                        next(rates),
                        is_first=j == 0 and n == 0,
                        deploy=deploy,
                        **dd,
                    )
                    for n in range(sub_depth[j])
                ]
            )

        self.patch_embed1 = _stem(in_chans, c1, **dd)
        self.patch_embed2 = nn.Sequential(*_conv_bn(c1, c2, 2, 3, **dd))
        self.patch_embed3 = nn.Sequential(*_conv_bn(c2, c3, 2, 3, **dd))
        self.patch_embed4 = nn.Sequential(*_conv_bn(c3, c4, 2, 3, **dd))
        self.high_level_proj = nn.Conv2d(c4, ctx, 1, **dd)
        self.patch_embedx = ContextDownsample(c3, c4, **dd)
        self.blocks1, self.blocks2, self.blocks3, self.blocks4 = (base_stage(i) for i in range(4))
        self.sub_blocks3, self.sub_blocks4 = focus_stage(0), focus_stage(1)
        if dense_outputs is None:
            self.num_features = self.head_hidden_size = projection
            self.head = nn.Sequential(
                nn.Conv2d(self.widths[-1], projection, 1, bias=False, **dd),
                nn.BatchNorm2d(projection, **dd),
                nn.SiLU(),
                nn.Dropout(drop_rate),  # the official AdaptiveAvgPool2d slot: pooling is in forward_head
                self._classifier(num_classes, **dd),
            )
        else:
            self.head = None
            self.num_features = self.head_hidden_size = self.widths[-1]
            self.extra_norm = nn.ModuleList([_norm(w, **dd) for w in self.widths])
            if dense_outputs == "det":
                self.extra_norm.append(_norm(c4, **dd))
                self.h_proj = nn.Sequential(
                    nn.Conv2d(c4, self.widths[-1], 1, **dd), ChannelScale(self.widths[-1], 1e-5, **dd)
                )
        self.apply(self._init_weights)

    def _classifier(self, num_classes: int, device=None, dtype=None) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        return nn.Conv2d(self.num_features, num_classes, 1, device=device, dtype=dtype)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        """The official init: truncated-normal (std .02) convs with zero bias."""
        if isinstance(m, nn.Conv2d):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    # ----------------------------------------------------------------- forward pieces
    def _run(self, x: torch.Tensor, n_stages: int = 4) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """The first ``n_stages`` features (normed in the dense forms) and the Overview context."""
        check_images(x, self.in_chans, type(self).__name__)
        norms = getattr(self, "extra_norm", None)
        feats = []

        def keep(i: int, f: torch.Tensor) -> torch.Tensor:
            feats.append(f if norms is None else norms[i](f))
            return feats[-1]

        x = self.blocks1(self.patch_embed1(x))
        keep(0, x)
        if n_stages == 1:
            return feats, None
        x = keep(1, self.blocks2(self.patch_embed2(x)))  # the dense forms feed the normed map on
        if n_stages == 2:
            return feats, None
        x = self.blocks3(self.patch_embed3(x))
        overview = self.blocks4(self.patch_embed4(x))
        guide = self.high_level_proj(overview)
        guide_up = _resize_like(guide, x)
        joined = self.sub_blocks3(x, guide_up, guide_up)
        keep(2, joined)
        if n_stages == 3:
            return feats, overview
        c3 = self.blocks3[0].dwconv.in_channels
        x, ctx = self.patch_embedx(joined[:, :c3], joined[:, c3:])
        keep(3, self.sub_blocks4(x, ctx, guide))
        if self.dense_outputs == "det":
            feats[3] = feats[3] + self.h_proj(self.extra_norm[4](overview))
        return feats, overview

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The classifier: the head's conv -> BN -> SiLU on the last feature; dense forms: the last
        dense output."""
        return self._head_features(self._run(x)[0][-1])

    def _head_features(self, x: torch.Tensor) -> torch.Tensor:
        """The head's conv 1x1 -> BN -> SiLU, before pooling (none in the dense forms or once pruned)."""
        if self.head is None:
            return x
        return self.head[2](self.head[1](self.head[0](x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool (``global_pool='avg'``), dropout, classifier; unpooled maps stay maps."""
        pooled = self.global_pool == "avg"
        if pooled:
            x = x.mean((2, 3), keepdim=True)
        if self.head is not None:
            x = self.head[3](x)
            if not pre_logits:
                x = self.head[4](x)
        return x.flatten(1) if pooled else x

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
        """The ``feature_info`` maps (``indices``: last n if int, all if None); ``norm`` is accepted for
        timm's API (the dense forms' extra norms are part of their features)."""
        check_output_fmt(output_fmt)
        take, max_index = feature_take_indices(4, indices)
        feats, _ = self._run(x, max_index + 1 if stop_early else 4)
        picked = [feats[i] if output_fmt == "NCHW" else feats[i].permute(0, 2, 3, 1) for i in take]
        if intermediates_only:
            return picked
        last = feats[-1]
        return (last if len(feats) < 4 else self._head_features(last)), picked

    def prune_intermediate_layers(
        self,
        indices: int | list[int] | tuple[int, ...] = 1,
        prune_norm: bool = False,
        prune_head: bool = True,
    ) -> list[int]:
        """Keep every stage (the Focus-Net needs the Overview-Net of stage 4); ``prune_head`` drops
        the whole head (its conv and BN too, so no parameter goes unused, e.g. under DDP)."""
        take, _ = feature_take_indices(4, indices)
        if prune_head:
            self.head, self.num_classes, self.global_pool = None, 0, ""
            self.num_features = self.head_hidden_size = self.widths[-1]
        return take

    # ----------------------------------------------------------------- timm model API
    def no_weight_decay(self) -> set[str]:
        """1-d parameters and the relative position bias tables."""
        return {n for n, p in self.named_parameters() if p.ndim <= 1 or n.endswith((".rpb1", ".rpb2"))}

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return dict(
            stem=r"^patch_embed1\.",
            blocks=[
                (r"^(?:patch_embed|blocks)(\d+)" if coarse else r"^blocks(\d+)\.(\d+)", None),
                (r"^patch_embed(\d+)", (0,)),
                (r"^(?:high_level_proj|patch_embedx|sub_blocks\d)", (5,)),
                (r"^(?:head|extra_norm|h_proj)", (99999,)),
            ],
        )

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for stage in (
            self.blocks1,
            self.blocks2,
            self.blocks3,
            self.blocks4,
            self.sub_blocks3,
            self.sub_blocks4,
        ):
            stage.grad_checkpointing = enable

    def get_classifier(self) -> nn.Module:
        return nn.Identity() if self.head is None else self.head[4]

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new classifier on the model's device and dtype, in its current train / eval mode."""
        if global_pool is not None:
            self.global_pool = check_global_pool(global_pool)
        if self.head is None:
            if num_classes:
                raise ValueError(f"this {type(self).__name__} has no head (a dense form or pruned)")
            return
        self.num_classes = num_classes
        self.head[4] = self._classifier(num_classes, **get_device_dtype(self)).train(self.training)


_DROPPED = ("aux_head.",)


def convert_overlock(state_dict: StateDict, model: nn.Module | None = None) -> StateDict:
    """Official checkpoints share attnzoo's keys. Dropped: ``aux_head.*`` (training-only deep
    supervision, not built here), and ``head.*`` when loading into a dense form (which has none, as in
    the official dense code). A detector / segmentor checkpoint gives its ``backbone.*`` entries.

    A ``_reparam`` (deployment) checkpoint fits only the ``overlock_*_reparam`` models and vice versa;
    loading one into the other names the mismatch.
    """
    state_dict = detector_backbone(model_tensors(state_dict))
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith(_DROPPED)}
    if model is not None:
        own = model.state_dict()
        if "head.0.weight" not in own:  # a dense form (no head): the classifier's head stays behind
            state_dict = {k: v for k, v in state_dict.items() if not k.startswith("head.")}
        folded = any(k.endswith("lk_origin.bias") for k in state_dict)
        if folded != any(k.endswith("lk_origin.bias") for k in own):
            have, want = ("re-parameterised", "training") if folded else ("training", "re-parameterised")
            raise ValueError(
                f"checkpoint has the {have} structure but the model the {want} one: use the "
                f"{'overlock_*_reparam' if folded else 'overlock_* (not _reparam)'} models for it"
            )
    return verify_against_model(state_dict, model)


_RELEASE = "https://github.com/LMMMEng/OverLoCK/releases/download/v1/"

FAMILY = register_family(
    Family(
        name="overlock",
        module=__name__,
        paper="OverLoCK: An Overview-first-Look-Closely-next ConvNet with Context-Mixing Dynamic Kernels",
        paper_ids="arXiv:2502.20087",
        repo="https://github.com/LMMMEng/OverLoCK",
        license="apache-2.0",
        citation="""@inproceedings{lou2025overlock,
  title={OverLoCK: An Overview-first-Look-Closely-next ConvNet with Context-Mixing Dynamic Kernels},
  author={Lou, Meng and Yu, Yizhou},
  booktitle={IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages={128--138},
  year={2025}
}""",
        converter=convert_overlock,
        cfg=dict(pool_size=(7, 7), first_conv="patch_embed1.0", classifier="head.4"),
        # The official release assets; the deployment (_reparam) checkpoints score as their originals.
        weights=tuple(
            Weights(
                f"overlock_{size}{form}",
                "in1k",
                (Source(url=f"{_RELEASE}overlock_{size}_in1k_224{form}.pth"),),
                top1=top1,
                params_m=params_m,
                gflops=gflops,
                cfg=dict(crop_pct=crop_pct),
            )
            for form in ("", "_reparam")
            for size, top1, params_m, gflops, crop_pct in (
                ("xt", 82.7, 16, 2.6, 0.925),
                ("t", 84.2, 33, 5.5, 0.95),
                ("s", 84.8, 56, 9.7, 0.95),
                ("b", 85.1, 95, 16.7, 0.975),
            )
        ),
        goldens={"overlock_xt": "overlock_xt", "overlock_t": "overlock_t"},
        dense_goldens={"overlock_t_det": ("overlock_t", "det")},
        feature_cfg=dict(feature_cls="getter", out_indices=(0, 1, 2, 3)),
        # Stage k opens with patch_embed{k+1}; the Overview / Focus modules run with stages 3-4.
        # Stage k (from 1 in the names) opens with patch_embed{k}; the Focus-Net stage 3 goes with
        # stage 3, the Overview projection and the stage-4 context downsample with stage 4 (the last).
        # The dense forms' output norms freeze with the stage they follow (extra_norm.4, on the
        # Overview context, and h_proj with the last).
        dense=DenseLayout(
            out_indices=(0, 1, 2, 3),
            stem=r"patch_embed1\.",
            stage=r"(?:patch_embed|blocks|sub_blocks)(\d)\.",
            last=r"(?:head|h_proj|high_level_proj|patch_embedx)\.",
            stage_base=1,
            output_norms=r"extra_norm\.(\d)\.",
            forms={form: dict(dense_outputs=form, num_classes=0) for form in DENSE_FORMS},
        ),
    )
)


default_cfgs = FAMILY.default_cfgs()

_VARIANTS: dict[str, dict[str, Any]] = {
    "xt": dict(depth=(2, 2, 3, 2), sub_depth=(6, 2), embed_dim=(56, 112, 256, 336), sub_num_heads=(4, 6)),
    "t": dict(depth=(4, 4, 6, 2), sub_depth=(12, 2), embed_dim=(64, 128, 256, 512), sub_num_heads=(4, 8)),
    "s": dict(depth=(6, 6, 8, 3), sub_depth=(16, 3), embed_dim=(64, 128, 320, 512), sub_num_heads=(8, 16)),
    "b": dict(depth=(8, 8, 10, 4), sub_depth=(20, 4), embed_dim=(80, 160, 384, 576), sub_num_heads=(6, 9)),
}
_COMMON = dict(kernel_size=(17, 15, 13, 7), mlp_ratio=(4, 4, 4, 4), sub_mlp_ratio=(3, 3))


def _create(size: str, pretrained: bool, deploy: bool, **kwargs: Any) -> OverLoCK:
    variant = f"overlock_{size}_reparam" if deploy else f"overlock_{size}"
    args = {**_COMMON, **_VARIANTS[size], "deploy": deploy, **kwargs}
    return FAMILY.build(OverLoCK, variant, pretrained, **args)


@register_model
def overlock_xt(pretrained: bool = False, **kwargs: Any) -> OverLoCK:
    """OverLoCK-XT: depths 2-2-3-2 + Focus 6-2, widths 56-112-256-336."""
    return _create("xt", pretrained, False, **kwargs)


@register_model
def overlock_t(pretrained: bool = False, **kwargs: Any) -> OverLoCK:
    """OverLoCK-T: depths 4-4-6-2 + Focus 12-2, widths 64-128-256-512."""
    return _create("t", pretrained, False, **kwargs)


@register_model
def overlock_s(pretrained: bool = False, **kwargs: Any) -> OverLoCK:
    """OverLoCK-S: depths 6-6-8-3 + Focus 16-3, widths 64-128-320-512."""
    return _create("s", pretrained, False, **kwargs)


@register_model
def overlock_b(pretrained: bool = False, **kwargs: Any) -> OverLoCK:
    """OverLoCK-B: depths 8-8-10-4 + Focus 20-4, widths 80-160-384-576."""
    return _create("b", pretrained, False, **kwargs)


@register_model
def overlock_xt_reparam(pretrained: bool = False, **kwargs: Any) -> OverLoCK:
    """OverLoCK-XT in the official deployment structure (every dilated re-param block folded)."""
    return _create("xt", pretrained, True, **kwargs)


@register_model
def overlock_t_reparam(pretrained: bool = False, **kwargs: Any) -> OverLoCK:
    """OverLoCK-T in the official deployment structure."""
    return _create("t", pretrained, True, **kwargs)


@register_model
def overlock_s_reparam(pretrained: bool = False, **kwargs: Any) -> OverLoCK:
    """OverLoCK-S in the official deployment structure."""
    return _create("s", pretrained, True, **kwargs)


@register_model
def overlock_b_reparam(pretrained: bool = False, **kwargs: Any) -> OverLoCK:
    """OverLoCK-B in the official deployment structure."""
    return _create("b", pretrained, True, **kwargs)

"""A skeleton for hierarchical backbones that implements timm's model API once.

Layout: an optional stem, then per stage a downsample and a :class:`Stage` of blocks (channels-first
maps between stages), then a final norm (or a conv head, EfficientNet's ``conv_head`` style) and a
pooled linear head. A dense form (an official detection / segmentation backbone) instead puts a norm
on every stage output (``output_norms``) and has no final norm or head. A family builds those modules and
hands them to :class:`HierarchicalBackbone`, which registers them under the family's official names
(:class:`ModuleNames`, so official checkpoints keep their keys) and provides ``forward_features`` /
``forward_head`` / ``forward_intermediates`` / ``prune_intermediate_layers`` / classifier, grouping,
checkpointing and weight-decay hooks, ``feature_info`` and the input check.

The stage loop calls every downsample and stage module, so forward hooks on ``stages.{i}`` (Grad-CAM,
``feature_cls='hook'``) and torch.fx node names line up with ``feature_info``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from timm.layers import get_device_dtype
from timm.models import checkpoint_seq
from torch import nn

from attnzoo._timm import feature_take_indices
from attnzoo.backbones._checks import check_global_pool, check_images, check_output_fmt

__all__ = ["HierarchicalBackbone", "ModuleNames", "Stage"]


class Stage(nn.Sequential):
    """A stage's blocks, run in order; with grad checkpointing on, each block is checkpointed.

    Checkpointing lives here rather than in the model's loop so that the loop still calls the stage
    module (its hooks fire) whether or not checkpointing is on.
    """

    def __init__(self, *blocks: nn.Module) -> None:
        super().__init__(*blocks)
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint_seq(self, x)
        return super().forward(x)


@dataclass(frozen=True)
class ModuleNames:
    """Attribute names (state-dict prefixes) of the stem and the downsamples.

    ``stem=None``: the family has no separate stem; ``downsamples[0]`` is its stem (the official
    ConvNeXt / BiFormer ``downsample_layers.0``).
    """

    stem: str | None = "stem"
    downsamples: str = "downsamples"
    output_norms: str = "extra_norms"


class HierarchicalBackbone(nn.Module):
    """Stem -> (downsample[i] -> stages[i]) for each stage -> norm -> average pool -> dropout -> linear.

    Args:
        stem: runs first; ``None`` when ``downsamples[0]`` is the stem (then ``module_names.stem``
            must be ``None``).
        downsamples: one module per stage, run before it (``nn.Identity()`` where a stage keeps the
            resolution).
        stages: one :class:`Stage` per stage.
        norm: the final norm, on the last stage's channels-first map (e.g. ``nn.BatchNorm2d`` or
            ``timm.layers.LayerNorm2d``), or a conv head (conv 1x1 -> norm -> act) before pooling.
        widths: each stage's output channels.
        num_features: the channels ``norm`` returns, which feed the classifier (default: ``widths[-1]``).
        output_norms: a dense form's norm per stage output (registered as ``module_names.output_norms``):
            every feature and ``forward_features`` come out normed; pass ``norm=nn.Identity()`` and
            ``num_classes=0`` with them.
        reductions: each stage's output stride.
        in_chans, num_classes, global_pool (``'avg'`` or ``''``), drop_rate (before the head): as in timm.

    A subclass sets ``module_names`` to its official names, builds its modules, passes them here and
    then initialises weights; it may extend :meth:`no_weight_decay`. Input errors name the subclass.
    """

    module_names: ClassVar[ModuleNames] = ModuleNames()

    def __init__(
        self,
        *,
        stem: nn.Module | None,
        downsamples: Sequence[nn.Module],
        stages: Sequence[Stage],
        norm: nn.Module,
        widths: Sequence[int],
        reductions: Sequence[int],
        num_features: int | None = None,
        output_norms: Sequence[nn.Module] | None = None,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        drop_rate: float = 0.0,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if not len(downsamples) == len(stages) == len(widths) == len(reductions):
            raise ValueError("downsamples, stages, widths and reductions need one entry per stage")
        if (stem is None) != (self.module_names.stem is None):
            raise ValueError(f"{type(self).__name__}: stem given iff module_names.stem names it")
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.global_pool = check_global_pool(global_pool)
        self.widths = tuple(widths)
        self.num_features = self.head_hidden_size = num_features or widths[-1]
        self.feature_info = [
            dict(num_chs=c, reduction=r, module=f"stages.{i}")
            for i, (c, r) in enumerate(zip(widths, reductions, strict=True))
        ]
        if stem is not None:
            setattr(self, self.module_names.stem, stem)
        setattr(self, self.module_names.downsamples, nn.ModuleList(downsamples))
        self.stages = nn.ModuleList(stages)
        if output_norms is not None:
            if len(output_norms) != len(stages):
                raise ValueError("output_norms needs one norm per stage")
            setattr(self, self.module_names.output_norms, nn.ModuleList(output_norms))
        self.norm = norm
        self.head_drop = nn.Dropout(drop_rate)
        self.head = self._classifier(num_classes, device=device, dtype=dtype)

    def _classifier(self, num_classes: int, device=None, dtype=None) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        return nn.Linear(self.num_features, num_classes, device=device, dtype=dtype)

    def _downsamples(self) -> nn.ModuleList:
        return getattr(self, self.module_names.downsamples)

    def _output(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Stage ``i``'s feature: its map, through the dense form's output norm when there is one."""
        norms = getattr(self, self.module_names.output_norms, None)
        return x if norms is None else norms[i](x)

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        """Check the images, then run the stem (if the family has a separate one)."""
        check_images(x, self.in_chans, type(self).__name__)
        return x if self.module_names.stem is None else getattr(self, self.module_names.stem)(x)

    # ----------------------------------------------------------------- timm model API
    def no_weight_decay(self) -> set[str]:
        """Norm weights and biases (1-d parameters): the usual recipe (timm's optimizer factory skips
        1-d parameters by itself; other optimizer set-ups read this set)."""
        return {name for name, p in self.named_parameters() if p.ndim <= 1}

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """The stem, then one group per stage (or block), each stage's downsample with its first block."""
        names = self.module_names
        downsamples = names.downsamples
        return dict(
            stem=rf"^{names.stem}" if names.stem else rf"^{downsamples}\.0",
            blocks=[
                (r"^stages\.(\d+)" if coarse else r"^stages\.(\d+)\.(\d+)", None),
                (rf"^{downsamples}\.(\d+)", (0,)),
                (rf"^(?:norm|{names.output_norms})", (99999,)),
            ],
        )

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for stage in self.stages:
            stage.grad_checkpointing = enable

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new head on the model's device and dtype, in its current train / eval mode."""
        if global_pool is not None:
            self.global_pool = check_global_pool(global_pool)
        self.num_classes = num_classes
        self.head = self._classifier(num_classes, **get_device_dtype(self)).train(self.training)

    # ----------------------------------------------------------------- forward pieces
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's map after the final norm (or conv head), ``(B, C, ceil(H / r), ceil(W / r))``."""
        x = self._input(x)
        for downsample, stage in zip(self._downsamples(), self.stages, strict=True):
            x = stage(downsample(x))
        return self.norm(self._output(len(self.stages) - 1, x))

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
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Stage outputs (``indices``: last n if int, all if None) at the ``feature_info`` strides.

        ``norm=True`` applies the final norm to the last stage's map (a dense form's output norms
        always apply: they are part of its features). Unless ``intermediates_only``, also returns what
        ``forward_features`` returns (the last run stage's feature when stopped early).
        """
        check_output_fmt(output_fmt)
        last = len(self.stages) - 1
        take, max_index = feature_take_indices(len(self.stages), indices)
        n_run = max_index + 1 if stop_early else len(self.stages)
        x = self._input(x)
        downsamples = self._downsamples()
        intermediates = []
        for i in range(n_run):
            x = self.stages[i](downsamples[i](x))
            if i in take:
                y = self._output(i, x)
                y = self.norm(y) if norm and i == last else y
                intermediates.append(y if output_fmt == "NCHW" else y.permute(0, 2, 3, 1))
        if intermediates_only:
            return intermediates
        y = self._output(n_run - 1, x)
        return (self.norm(y) if n_run == last + 1 else y), intermediates

    def prune_intermediate_layers(
        self,
        indices: int | Sequence[int] = 1,
        prune_norm: bool = False,
        prune_head: bool = True,
    ) -> list[int]:
        """Drop the stages after the last one ``indices`` asks for (and norm / head); return the indices."""
        take, max_index = feature_take_indices(len(self.stages), indices)
        pruned = max_index + 1 < len(self.stages)
        self.stages = self.stages[: max_index + 1]
        setattr(self, self.module_names.downsamples, self._downsamples()[: max_index + 1])
        norms = getattr(self, self.module_names.output_norms, None)
        if norms is not None:
            setattr(self, self.module_names.output_norms, norms[: max_index + 1])
        if prune_norm or pruned:
            self.norm = nn.Identity()
            self.num_features = self.head_hidden_size = self.widths[max_index]
        if prune_head:
            self.reset_classifier(0, "")
        return take

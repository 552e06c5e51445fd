"""Layer-wise learning-rate decay for detectors / segmentors built on ``AttnZooBackbone``.

mmdet's and mmseg's ``LearningRateDecayOptimizerConstructor`` find a parameter's layer by ConvNeXt / BEiT
parameter names, so they place no attnzoo parameter. This constructor reads the layer from the family's
:class:`~attnzoo.backbones._family.DenseLayout` instead (the stage assignment ``frozen_stages`` uses), so
one rule covers every family: layer 0 is the stem, layer ``k + 1`` the backbone's stage ``k`` (a block,
for plain ViTs), and everything outside the backbone (neck, heads) the top layer, ``num_layers``:

    lr = base_lr * decay_rate ** (num_layers - layer_id),   num_layers = number of stages + 1

ViTDet's rule (``get_vit_lr_decay_rate``: patch embedding 0, block ``i`` at ``i + 1``, the rest at the
top), extended to hierarchical backbones. Weight decay is the default constructor's (``custom_keys``,
``norm_decay_mult``, ...), so a no-decay parameter keeps weight decay 0 at every layer.
"""

from __future__ import annotations

from mmengine.optim import DefaultOptimWrapperConstructor
from torch import nn

from attnzoo.mm.backbone import AttnZooBackbone


class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """``optim_wrapper=dict(constructor='LayerDecayOptimWrapperConstructor', paramwise_cfg=dict(
    decay_rate=0.7, ...))``; the other ``paramwise_cfg`` keys are ``DefaultOptimWrapperConstructor``'s.

    Raises:
        ValueError: no ``decay_rate`` in ``(0, 1]``, or (when called) a model without an
            ``AttnZooBackbone``.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict | None = None) -> None:
        rate = (paramwise_cfg or {}).get("decay_rate")
        if not isinstance(rate, int | float) or not 0 < rate <= 1:
            raise ValueError(
                f"LayerDecayOptimWrapperConstructor needs paramwise_cfg.decay_rate in (0, 1], got {rate!r}"
            )
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        self.decay_rate = float(rate)

    def layer_scales(self, model: nn.Module) -> dict[int, float]:
        """``id(parameter)`` -> its lr factor, for every parameter of every ``AttnZooBackbone`` in ``model``
        (parameters not listed are at the top layer: factor 1)."""
        scales: dict[int, float] = {}
        backbones = [m for m in model.modules() if isinstance(m, AttnZooBackbone)]
        if not backbones:
            raise ValueError(
                f"LayerDecayOptimWrapperConstructor: {type(model).__name__} has no AttnZooBackbone"
            )
        for backbone in backbones:
            ranks = backbone.stage_ranks()
            num_layers = backbone.num_stages + 1
            for name, param in backbone.named_parameters():
                scales[id(param)] = self.decay_rate ** (num_layers - (ranks[name] + 1))
        return scales

    def add_params(self, params: list[dict], module: nn.Module, prefix: str = "", is_dcn_module=None) -> None:
        super().add_params(params, module, prefix, is_dcn_module)
        if prefix:  # the default constructor recurses through add_params; scale once, at the top
            return
        scales = self.layer_scales(module)
        for group in params:
            scale = scales.get(id(group["params"][0]), 1.0)
            group["lr"] = group.get("lr", self.base_lr) * scale

"""``AttnZooBackbone``: any attnzoo (or timm) model as an mmdet / mmseg backbone, through ``features_only``.

Stages, for ``frozen_stages``
-----------------------------
mmdet's ResNet convention: ``frozen_stages=0`` freezes the stem, ``frozen_stages=n`` the stem and the
first ``n`` stages (parameters get ``requires_grad=False``; the frozen modules stay in eval mode, also
after ``.train()``). A *stage* here is one entry of the model's full ``feature_info`` that is not part
of the stem:

- hierarchical models (BiFormer, HaloNet): the resolution stages. The stem is what runs before the
  first stage (BiFormer: ``downsample_layers.0``; HaloNet: ``stem.*``, whose stride-2 feature is not
  counted as a stage); the downsampling layer in front of stage ``i`` belongs to stage ``i``; the
  final norm (BiFormer) or ``final_conv`` (HaloNet) belongs to the last stage.
- plain ViT-like models (ConViT, InfViT: every feature at stride 16): each transformer block is a
  stage, and the stem is ``patch_embed`` + ``cls_token`` + ``pos_embed`` (as mmpretrain's
  ``VisionTransformer`` does). ``frozen_stages=4`` freezes the patch embedding and blocks 0-3; the
  final norm only freezes with the last block.

Models whose features come from ``FeatureGetterNet`` (``forward_intermediates``) are mapped to stages
with the model's ``group_matcher(coarse=True)``; models wrapped by ``FeatureListNet`` (run as a
sequence of modules) by their execution order. Parameter-free modules (dropout after the stem) are not
switched to eval mode unless they sit inside a frozen module.

Plain ViT-like models give one stride; detection / segmentation configs put a neck in front of the
head that makes the pyramid (mmseg's ``Feature2Pyramid`` / ``MultiLevelNeck``, usable from mmdet
configs as ``type='mmseg.Feature2Pyramid'``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import timm
import torch
from mmengine.model import BaseModule
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

import attnzoo  # noqa: F401  (registers the attnzoo models with timm)
from attnzoo._timm import FeatureGetterNet

_STEM = -1.0
_LAST = math.inf  # timm's group_matcher suffix (99999,): "belongs with the previous group"


class AttnZooBackbone(BaseModule):
    """A timm ``features_only`` model as an OpenMMLab backbone.

    Args:
        model_name: a timm model name, e.g. ``'biformer_tiny'`` (see ``attnzoo list``).
        out_indices: indices into the model's ``feature_info`` to return; default: the last four.
        pretrained: ``False``, ``True`` (the model's default pretrained weights) or a path to a
            checkpoint file (official or attnzoo keys; converted by ``attnzoo.convert_official``).
        frozen_stages: freeze the stem and the first ``frozen_stages`` stages; ``-1`` freezes nothing.
        norm_eval: keep every BatchNorm layer in eval mode (running stats frozen) during training.
        drop_path_rate: stochastic depth of the model (``None``: the model's default).
        init_cfg: mmengine init config, applied on top (e.g. ``Pretrained`` for a checkpoint saved from
            a detector / segmentor built with this backbone); ``None`` keeps the weights as built.
        **model_kwargs: passed on to ``timm.create_model`` (e.g. ``n_win=16`` for BiFormer).
    """

    def __init__(
        self,
        model_name: str,
        out_indices: Sequence[int] | None = None,
        pretrained: bool | str = False,
        frozen_stages: int = -1,
        norm_eval: bool = False,
        drop_path_rate: float | None = 0.1,
        init_cfg: dict | list | None = None,
        **model_kwargs: Any,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        if not isinstance(model_name, str) or not timm.is_model(model_name):
            raise ValueError(
                f"AttnZooBackbone: unknown model_name {model_name!r} (not registered with timm); "
                f"attnzoo models: {', '.join(attnzoo.list_models())}"
            )
        self.model_name = model_name
        kwargs = dict(model_kwargs)
        if drop_path_rate is not None:
            kwargs["drop_path_rate"] = drop_path_rate
        if isinstance(pretrained, str):
            kwargs["pretrained_cfg_overlay"] = dict(file=pretrained)
            pretrained = True
        elif not isinstance(pretrained, bool):
            raise TypeError(f"pretrained must be a bool or a file path, got {pretrained!r}")
        if out_indices is not None:
            if isinstance(out_indices, int) or not all(isinstance(i, int) for i in out_indices):
                raise TypeError(f"out_indices must be a sequence of ints, got {out_indices!r}")
            out_indices = tuple(out_indices)
            if not out_indices or len(set(out_indices)) != len(out_indices):
                raise ValueError(f"out_indices must be non-empty and without repeats, got {out_indices}")
        try:
            self.model = timm.create_model(
                model_name,
                pretrained=pretrained,
                features_only=True,
                **({} if out_indices is None else {"out_indices": out_indices}),
                **kwargs,
            )
        except AssertionError as err:  # timm's out-of-range message, with the model named
            raise ValueError(f"AttnZooBackbone({model_name!r}, out_indices={out_indices}): {err}") from err
        if out_indices is None:  # timm's default may be all levels; keep the last four
            levels = len(self.model.feature_info.info)
            wanted = tuple(range(max(0, levels - 4), levels))
            if tuple(self.model.feature_info.out_indices) != wanted:
                self.model = timm.create_model(
                    model_name, pretrained=pretrained, features_only=True, out_indices=wanted, **kwargs
                )
        info = self.model.feature_info
        self.out_indices: tuple[int, ...] = tuple(info.out_indices)
        self.out_channels: tuple[int, ...] = tuple(info.channels())
        self.strides: tuple[int, ...] = tuple(info.reduction())
        self.norm_eval = norm_eval
        self.frozen_stages = frozen_stages
        self._frozen_modules: list[nn.Module] = []
        if frozen_stages >= 0:
            self._freeze_stages(frozen_stages)

    # ---------------------------------------------------------------------------------------- stages
    def _stem_regex(self) -> re.Pattern | None:
        model = getattr(self.model, "model", None)
        matcher = getattr(model, "group_matcher", None)
        if matcher is None:
            return None
        stem = matcher(coarse=True).get("stem")
        return re.compile(stem) if isinstance(stem, str) else None

    def stage_modules(self) -> list[str]:
        """The module name (in the model's own naming) that ends each stage, in order."""
        stem = self._stem_regex()
        return [
            d["module"]
            for d in self.model.feature_info.info
            if d["reduction"] >= 4 and not (stem and stem.match(d["module"]))
        ]

    def _param_ranks(self) -> tuple[dict[str, float | None], list[float]]:
        """Each parameter's stage rank (-1 stem, 0.. stages) and the rank that ends each stage."""
        stages = self.stage_modules()
        if isinstance(self.model, FeatureGetterNet):
            inner = self.model.model
            if not hasattr(inner, "group_matcher"):
                raise NotImplementedError(f"{self.model_name}: frozen_stages needs model.group_matcher()")
            specs = _compile_matcher(inner.group_matcher(coarse=True))
            ranks = {f"model.{n}": _rank(n, specs) for n, _ in inner.named_parameters()}
            ends = [_rank(m, specs) for m in stages]
            if any(r is None for r in ends):
                raise NotImplementedError(f"{self.model_name}: group_matcher does not cover {stages}")
            return ranks, ends
        # FeatureListNet / FeatureDictNet: children run in order; module 'a.b' became child 'a_b'.
        children = [n for n, _ in self.model.named_children()]
        stage_child = {}
        for k, m in enumerate(stages):
            name = m if m in children else m.replace(".", "_", 1)
            if name in children:
                stage_child[name] = k
        ranks: dict[str, float | None] = {}
        current = _STEM
        for child_name, child in self.model.named_children():
            if child_name in stage_child:
                rank = float(stage_child[child_name])
                current = rank + 1
            else:
                rank = current
            for n, _ in child.named_parameters():
                ranks[f"{child_name}.{n}"] = rank
        return ranks, [float(k) for k in range(len(stages))]

    def _freeze_stages(self, frozen_stages: int) -> None:
        ranks, ends = self._param_ranks()
        if frozen_stages > len(ends):
            raise ValueError(
                f"frozen_stages={frozen_stages} but {self.model_name} has {len(ends)} stages "
                f"({self.stage_modules()}) after the stem"
            )
        limit = _STEM if frozen_stages == 0 else ends[frozen_stages - 1]
        if frozen_stages == len(ends):
            limit = _LAST
        frozen = {n for n, r in ranks.items() if r is not None and r <= limit}
        for name, param in self.model.named_parameters():
            if name in frozen:
                param.requires_grad_(False)
        # The largest modules all of whose parameters are frozen go (and stay) in eval mode.
        self._frozen_modules = []
        taken: list[str] = []
        for name, module in self.model.named_modules():
            if any(name.startswith(t + ".") for t in taken):
                continue
            params = [n for n, _ in module.named_parameters(prefix=name)]
            if params and all(p in frozen for p in params):
                taken.append(name)
                self._frozen_modules.append(module)
        for module in self._frozen_modules:
            module.eval()

    # ----------------------------------------------------------------------------------- nn.Module
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.model(x))

    def train(self, mode: bool = True) -> AttnZooBackbone:
        super().train(mode)
        if mode:
            for module in self._frozen_modules:
                module.eval()
                for p in module.parameters():
                    p.requires_grad_(False)
            if self.norm_eval:
                for module in self.modules():
                    if isinstance(module, _BatchNorm):
                        module.eval()
        return self

    def init_weights(self) -> None:
        """Weights come from construction (``pretrained``); only an explicit ``init_cfg`` changes them."""
        if self.init_cfg is not None:
            super().init_weights()


def _compile_matcher(matcher: dict) -> list[tuple[str, re.Pattern, tuple]]:
    specs = []
    for key, spec in matcher.items():
        if isinstance(spec, str):
            specs.append((key, re.compile(spec), ()))
        else:
            for regex, suffix in spec:
                specs.append((key, re.compile(regex), tuple(suffix or ())))
    return specs


def _rank(name: str, specs: list[tuple[str, re.Pattern, tuple]]) -> float | None:
    for key, regex, suffix in specs:
        match = regex.match(name)
        if not match:
            continue
        if key == "stem":
            return _STEM
        numbers = [float(g) for g in match.groups() if g is not None]
        if numbers:
            return numbers[0]
        if suffix and suffix[0] == 99999:
            return _LAST
        return float(suffix[0]) if suffix else None
    return None

"""``AttnZooBackbone``: any attnzoo (or timm) model as an mmdet / mmseg backbone, through ``features_only``.

Stages, for ``frozen_stages``
-----------------------------
mmdet's ResNet convention: ``frozen_stages=0`` freezes the stem, ``frozen_stages=n`` the stem and the
first ``n`` stages (parameters get ``requires_grad=False``; the frozen modules stay in eval mode, also
after ``.train()``); the largest valid value, the number of stages, freezes every parameter.

For attnzoo models the family record says what the stages are (``Family.dense``, a
:class:`~attnzoo.backbones._family.DenseLayout`): stage ``k`` ends in ``feature_info`` entry
``first_stage + k`` (entries before ``first_stage`` are stem outputs, e.g. HaloNet's stride-2
``stem.conv1``), and its regexes put each parameter, by the model's own name, in the stem, a stage, or
after the last stage (final norm / conv: frozen with the last stage). Hierarchical families count
resolution stages (a downsample belongs to the stage it opens); plain ViTs (ConViT, InfViT,
Sparsifiner, KArAt) count blocks, with ``patch_embed`` + ``cls_token`` + ``pos_embed`` as the stem,
as mmpretrain's ``VisionTransformer`` does. The same record gives the default ``out_indices``. A
parameter the layout does not place is an error, so an incomplete layout fails the adapter tests
(parametrised over the registry), not a training run.

Models timm registers and attnzoo does not get a generic rule instead: the last four ``feature_info``
entries by default (pass ``out_indices`` for a model with fewer); the stages are the entries at
stride >= 4 (ResNet-style stride-2 stem outputs are not stages), and parameters are assigned by
registration order (those before stage 0's module are the stem; those between two stage modules open
the later stage), which holds for models that register their modules in the order they run.

Official detector / segmentor checkpoints
------------------------------------------
A checkpoint of the family's official mmdet / mmseg code holds the backbone as ``backbone.<official
key>``; this backbone's own keys are ``backbone.model.<...>``. Loading such a checkpoint (mmengine's
``load_from`` / ``load_checkpoint``, ``init_cfg=dict(type='Pretrained', ...)``, ``load_state_dict``)
converts the entries under the backbone's prefix with the family converter, checked against the
model, and leaves neck / head keys alone; one that does not fit (another form, width or family)
raises naming the keys. Checkpoints saved from ``AttnZooBackbone`` (keys under ``model.``) load as
they are.

Parameter-free modules (dropout after the stem) are not switched to eval mode unless they sit inside a
frozen module. Plain ViT-like models give one stride; detection / segmentation configs put a neck in
front of the head that makes the pyramid (mmseg's ``Feature2Pyramid`` / ``MultiLevelNeck``, usable
from mmdet configs as ``type='mmseg.Feature2Pyramid'``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import timm
import torch
from mmengine.model import BaseModule
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

import attnzoo  # noqa: F401  (registers the attnzoo models with timm)
from attnzoo._timm import FeatureGetterNet
from attnzoo.backbones._family import DenseLayout, UnknownModelError, family_of
from attnzoo.zoo.convert import convert_official

# Default for models without a family record: the four coarsest levels, what FPN-style necks expect.
_GENERIC_OUT_INDICES = (-4, -3, -2, -1)


class AttnZooBackbone(BaseModule):
    """A timm ``features_only`` model as an OpenMMLab backbone.

    Args:
        model_name: a timm model name, e.g. ``'biformer_tiny'`` (see ``attnzoo list``); a name timm does
            not know raises :class:`~attnzoo.backbones.UnknownModelError` listing close matches.
        out_indices: indices into the model's ``feature_info`` to return; default: the family record's
            (``Family.dense.out_indices``), the last four for other timm models.
        pretrained: ``False``, ``True`` (the model's default pretrained weights) or a path to a
            checkpoint file (official or attnzoo keys; converted by ``attnzoo.convert_official``).
        frozen_stages: freeze the stem and the first ``frozen_stages`` stages; ``-1`` freezes nothing.
        norm_eval: keep every BatchNorm layer in eval mode (running stats frozen) during training.
        drop_path_rate: stochastic depth of the model (``None``: the model's default).
        dense_form: one of the family's official dense backbones (``Family.dense.forms``, e.g.
            ``'det'`` / ``'seg'`` for OverLoCK: extra output norms and heads, the keys of the official
            detection / segmentation checkpoints); ``None``: the classifier's own features.
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
        dense_form: str | None = None,
        init_cfg: dict | list | None = None,
        **model_kwargs: Any,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        if not isinstance(model_name, str) or not timm.is_model(model_name):
            raise UnknownModelError(model_name, timm.list_models())
        self.model_name = model_name
        self.dense_form = dense_form
        self.layout: DenseLayout | None = _family_layout(model_name)
        kwargs = {**self._form_kwargs(dense_form), **model_kwargs}
        if drop_path_rate is not None:
            kwargs["drop_path_rate"] = drop_path_rate
        if isinstance(pretrained, str):
            kwargs["pretrained_cfg_overlay"] = dict(file=pretrained)
            pretrained = True
        elif not isinstance(pretrained, bool):
            raise TypeError(f"pretrained must be a bool or a file path, got {pretrained!r}")
        if out_indices is None:
            out_indices = self.layout.out_indices if self.layout else _GENERIC_OUT_INDICES
        elif isinstance(out_indices, int) or not all(isinstance(i, int) for i in out_indices):
            raise TypeError(f"out_indices must be a sequence of ints, got {out_indices!r}")
        out_indices = tuple(out_indices)
        if not out_indices or len(set(out_indices)) != len(out_indices):
            raise ValueError(f"out_indices must be non-empty and without repeats, got {out_indices}")
        try:
            self.model = timm.create_model(
                model_name, pretrained=pretrained, features_only=True, out_indices=out_indices, **kwargs
            )
        except (AssertionError, IndexError) as err:  # timm's out-of-range errors, with the model named
            raise ValueError(f"AttnZooBackbone({model_name!r}, out_indices={out_indices}): {err}") from err
        info = self.model.feature_info
        levels = len(info.info)
        self.out_indices: tuple[int, ...] = tuple(i + levels if i < 0 else i for i in info.out_indices)
        self.out_channels: tuple[int, ...] = tuple(info.channels())
        self.strides: tuple[int, ...] = tuple(info.reduction())
        self.norm_eval = norm_eval
        self.frozen_stages = frozen_stages
        self._frozen_modules: list[nn.Module] = []
        if frozen_stages >= 0:
            self._freeze_stages(frozen_stages)

    def _form_kwargs(self, dense_form: str | None) -> dict[str, Any]:
        """The model kwargs of the family's dense form ``dense_form``; a clear error for an unknown one."""
        if dense_form is None:
            return {}
        forms = self.layout.forms if self.layout else {}
        if dense_form not in forms:
            known = ", ".join(map(repr, forms)) or "none"
            raise ValueError(f"{self.model_name} has no dense form {dense_form!r} (its forms: {known})")
        return dict(forms[dense_form])

    # ---------------------------------------------------------------------------------------- stages
    @property
    def num_stages(self) -> int:
        """The number of stages after the stem (the largest ``frozen_stages``)."""
        return len(self._stage_modules())

    def stage_ranks(self) -> dict[str, int]:
        """Each parameter's stage by its name in this module: -1 the stem, then 0 .. ``num_stages - 1``
        (what ``frozen_stages`` counts; ``attnzoo.mm.optim``'s layer-wise lr decay reads it too)."""
        return {f"model.{name}": rank for name, rank in self._stage_ranks(self._stage_modules()).items()}

    def _stage_modules(self) -> list[str]:
        """The ``feature_info`` module (the model's own name) that ends each stage, in order."""
        info = self.model.feature_info.info
        if self.layout is not None:
            return [d["module"] for d in info[self.layout.first_stage :]]
        return [d["module"] for d in info if d["reduction"] >= 4]

    def _stage_ranks(self, stages: list[str]) -> dict[str, int]:
        """Each parameter's stage (-1: the stem), by the family's layout, else by registration order."""
        own = _own_names(self.model)
        if self.layout is None:
            return _ranks_by_order(own, stages)
        layout = self.layout
        stem, stage, last = (re.compile(p) for p in (layout.stem, layout.stage, layout.last))
        norms = re.compile(layout.output_norms) if layout.output_norms else None
        ranks: dict[str, int] = {}
        for name, own_name in own.items():
            if stem.match(own_name):
                ranks[name] = -1
            elif norms is not None and (match := norms.match(own_name)):
                ranks[name] = min(int(match.group(1)), len(stages) - 1)
            elif match := stage.match(own_name):
                ranks[name] = int(match.group(1)) - layout.stage_base
            elif last.match(own_name):
                ranks[name] = len(stages) - 1
        bad = [own_name for name, own_name in own.items() if not -1 <= ranks.get(name, -2) < len(stages)]
        if bad:
            raise RuntimeError(
                f"{self.model_name}: its family's DenseLayout ({layout}) puts these parameters in no stem "
                f"or stage of {len(stages)}: {bad[:8]}{' ...' if len(bad) > 8 else ''}"
            )
        return ranks

    def _freeze_stages(self, frozen_stages: int) -> None:
        stages = self._stage_modules()
        if frozen_stages > len(stages):
            raise ValueError(
                f"frozen_stages={frozen_stages} but {self.model_name} has {len(stages)} stages "
                f"({stages}) after the stem"
            )
        frozen = {n for n, rank in self._stage_ranks(stages).items() if rank < frozen_stages}
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

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        """Official-layout entries under ``prefix`` become this backbone's keys before loading (both
        ``nn.Module.load_state_dict`` and mmengine's loader hand each module the dict its children then
        read)."""
        entries = [k for k in state_dict if k.startswith(prefix)]
        if entries and not any(k.startswith(prefix + "model.") for k in entries):
            official = {k.removeprefix(prefix): state_dict.pop(k) for k in entries}
            state_dict.update({prefix + k: v for k, v in self._from_official(official).items()})
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _from_official(self, official: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """An official dense checkpoint's backbone entries, un-prefixed -> this module's keys."""
        keys = {own: name for name, own in _own_names(self.model, self.model.state_dict()).items()}
        inner = self.model.model if isinstance(self.model, FeatureGetterNet) else None
        try:
            converted = convert_official(self.model_name, official, inner) if self.layout else official
            unknown = sorted(set(converted) - keys.keys())
            missing = sorted(k for k in keys if k not in converted and not k.endswith("num_batches_tracked"))
            if unknown or missing:
                raise ValueError(f"unexpected keys {unknown[:5]}, missing keys {missing[:5]}")
        except ValueError as err:
            raise ValueError(
                f"the checkpoint's backbone entries (official layout) do not fit AttnZooBackbone"
                f"({self.model_name!r}, dense_form={self.dense_form!r}) as built: {err}"
            ) from err
        return {"model." + keys[k]: v for k, v in converted.items()}


def _family_layout(model_name: str) -> DenseLayout | None:
    """The family record's layout; ``None`` for a model timm registers and attnzoo does not."""
    try:
        return family_of(model_name).dense
    except UnknownModelError:
        return None


def _own_names(model: nn.Module, names: Iterable[str] | None = None) -> dict[str, str]:
    """The ``features_only`` wrapper's parameter names (or other ``names`` of its state dict) -> the
    model's own (state-dict) names.

    timm's getter wrapper holds the model as ``model``; its list / dict wrappers flatten each top-level
    ``nn.Sequential`` a feature comes from (``flatten_sequential``: ``stem.conv1`` becomes child
    ``stem_conv1``), and such a Sequential shows up as the dotted prefix of a ``feature_info`` module.
    """
    names = [name for name, _ in model.named_parameters()] if names is None else names
    if isinstance(model, FeatureGetterNet):
        return {name: name.removeprefix("model.") for name in names}
    flattened = {d["module"].split(".")[0] for d in model.feature_info.info if "." in d["module"]}
    own = {}
    for name in names:
        child, _, rest = name.partition(".")
        prefix = next((p for p in flattened if child.startswith(p + "_")), None)
        if prefix is not None:
            child = f"{prefix}.{child[len(prefix) + 1 :]}"
        own[name] = f"{child}.{rest}"
    return own


def _ranks_by_order(own: dict[str, str], stages: list[str]) -> dict[str, int]:
    """The generic rule, for models without a family record: stages by registration order.

    A parameter inside a stage's module belongs to that stage; one outside every stage module belongs
    to the next stage (before stage 0: the stem; after the last: the last stage).
    """
    ranks: dict[str, int] = {}
    current = -1
    for name, own_name in own.items():
        inside = [k for k, m in enumerate(stages) if own_name.startswith(m + ".")]
        if inside:
            current = inside[0]
            ranks[name] = current
            current += 1
        else:
            ranks[name] = min(current, len(stages) - 1)
    return ranks

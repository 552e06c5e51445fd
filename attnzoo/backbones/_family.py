"""One record per model family, declared once in its backbone module.

A :class:`Family` holds what attnzoo knows about a family as a whole: the paper, the official code
and its licence, the checkpoint converter, the pretrained-cfg fields its variants share, the release
manifest of its weights (one :class:`attnzoo.weights.Weights` per model and tag, from which timm's
pretrained cfgs are generated), and the parity goldens that check it. The backbone module writes its
entry points out with timm's ``@register_model`` (so ``grep register_model`` finds every model) and
builds each variant with :meth:`Family.build`; the family's models are the entry points that module
registers, so no side table lists them again.

Naming rule: a model keeps its official name (``biformer_tiny``, ``infvit_pure_4l``); a family whose
official names timm itself already registers (HaloNet, ConViT) gets the ``az_`` prefix on every model
(``az_halonet26t``), so attnzoo never replaces one of timm's entries. tests/test_naming.py holds the
registry to this rule.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import timm
import torch
from timm.models import build_model_with_cfg, generate_default_cfgs

from attnzoo._timm import registered_models
from attnzoo.backbones._convert import StateDict
from attnzoo.weights import Source, Weights, fetch_weights, read_state_dict
from attnzoo.weights.manifest import REDISTRIBUTABLE_LICENSES, hub_repo_id

__all__ = [
    "FAMILIES",
    "Converter",
    "DenseLayout",
    "Family",
    "Source",
    "StateDict",
    "UnknownModelError",
    "Weights",
    "family_of",
    "register_family",
]

Converter = Callable[[StateDict, "torch.nn.Module | None"], StateDict]


@dataclass(frozen=True)
class DenseLayout:
    """How a family's ``features_only`` model serves as a detection / segmentation backbone.

    ``attnzoo.mm.AttnZooBackbone`` reads this instead of inferring stages from the model, so a family
    states once, next to its model, what ``frozen_stages`` counts and which features a detector gets by
    default; the adapter tests check every registered family against it.

    Args:
        out_indices: the ``feature_info`` indices a detector / segmentor gets by default. Negative ones
            count from the end (timm's convention), so one value fits every depth of a plain ViT.
        stem: regex of the stem's parameters (what ``frozen_stages=0`` freezes).
        stage: regex whose first group is the number of the stage a parameter belongs to.
        last: regex of the parameters after the last stage (final norm / conv); they freeze with it.
        first_stage: the ``feature_info`` index of stage 0's output; entries before it are the stem's
            (HaloNet's stride-2 ``stem.conv1``). Stage ``k`` ends in entry ``first_stage + k``, so a model
            has ``len(feature_info) - first_stage`` stages.
        stage_base: the number the parameter names give the first stage (1 for OverLoCK's ``blocks1``);
            ``stage``'s group minus this is the stage index.
        output_norms: regex of a dense form's per-output norms whose group is the stage index they
            follow (from 0; beyond the last stage: the last), so each freezes with its stage, as
            mmdet's Swin does; matched before ``stage``.
        forms: the official dense backbones, by name (``'det'``, ``'seg'``) -> the model kwargs that build
            them (extra output norms, other heads), picked with ``AttnZooBackbone(dense_form=...)``.

    The regexes are ``re.match``-ed against the model's own parameter names (its state-dict keys, as
    in ``group_matcher``); every parameter of the ``features_only`` model must match one of them.
    """

    out_indices: tuple[int, ...]
    stem: str
    stage: str
    last: str
    first_stage: int = 0
    stage_base: int = 0
    output_norms: str | None = None
    forms: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A layout is declared at import time: a bad regex fails there, not in a detector run later.
        for pattern in (self.stem, self.last, self.output_norms or ""):
            re.compile(pattern)
        if re.compile(self.stage).groups < 1:
            raise ValueError(f"DenseLayout.stage needs a group for the stage number: {self.stage!r}")

    @classmethod
    def plain_vit(cls) -> DenseLayout:
        """timm-style ViTs (every feature at stride 16): each block is a stage, the last four the default.

        The stem is the patch embedding with the class / register tokens and position embedding (as
        mmpretrain's ``VisionTransformer`` counts it); the final norm freezes with the last block.
        """
        return cls(
            out_indices=(-4, -3, -2, -1),
            stem=r"(cls_token|reg_token|pos_embed|patch_embed|norm_pre)\b",
            stage=r"blocks\.(\d+)\.",
            last=r"(norm|fc_norm)\.",
        )


@dataclass(frozen=True)
class Family:
    """Everything a family declares once.

    Args:
        name: the family's name in ``attnzoo list`` (``'biformer'``).
        module: the backbone module whose ``@register_model`` entry points are the family's models.
        paper: paper title; ``paper_ids``: its arXiv id(s); ``repo``: the official code.
        license: licence of the official code / weights (a Hub licence id, e.g. ``'mit'``; ``'unknown'``
            when the official repository has none: such weights are linked, never re-hosted).
        citation: the paper's BibTeX entry (model cards).
        converter: official checkpoint -> attnzoo state dict (also timm's ``pretrained_filter_fn``).
        dense: how its models serve as detection / segmentation backbones (:class:`DenseLayout`).
        cfg: the pretrained-cfg fields every variant shares where they differ from timm's
            ``PretrainedCfg`` defaults (224 px, ImageNet mean / std, bicubic, crop 0.875, 1000 classes).
        weights: the release manifest: one record per model and pretrained tag (every registered
            model has at least one; ``'untrained'`` for a model without released weights). The first
            record of a model is its default tag. timm's ``default_cfgs`` come from :meth:`default_cfgs`.
        goldens: parity golden (file stem in tests/data) -> the model it checks.
        dense_goldens: parity golden of an official dense backbone -> (model, ``dense.forms`` entry):
            its four feature maps, checked through ``forward_intermediates``.
        feature_cfg: timm ``feature_cfg`` for ``features_only`` (default: ``forward_intermediates``).
    """

    name: str
    module: str
    paper: str
    paper_ids: str
    repo: str
    license: str
    converter: Converter
    dense: DenseLayout
    citation: str = ""
    cfg: Mapping[str, Any] = field(default_factory=dict)
    weights: tuple[Weights, ...] = ()
    goldens: Mapping[str, str] = field(default_factory=dict)
    dense_goldens: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    feature_cfg: Mapping[str, Any] = field(default_factory=lambda: {"feature_cls": "getter"})

    def models(self) -> list[str]:
        """The family's model names, as timm has them registered."""
        return registered_models(self.module)

    def pretrained_cfg(self, **fields: Any) -> dict[str, Any]:
        """A pretrained cfg: the family's paper / origin / licence and shared fields, then ``fields``."""
        return {
            "license": self.license,
            "paper_ids": self.paper_ids,
            "paper_name": self.paper,
            "origin_url": self.repo,
            **self.cfg,
            **fields,
        }

    def rehosts(self, weights: Weights) -> bool:
        """Whether attnzoo publishes (and loads first) a converted copy of ``weights`` on the Hub: the
        licence allows it and the official weights are not on the Hub already."""
        return self.license in REDISTRIBUTABLE_LICENSES and weights.released and weights.official_hub is None

    def weights_for(self, model: str, tag: str | None = None) -> Weights | None:
        """The manifest record of ``model.tag`` (``tag=None``: the model's default, its first record)."""
        return next((w for w in self.weights if w.model == model and tag in (None, w.tag)), None)

    def tag_cfg(self, weights: Weights) -> dict[str, Any]:
        """The pretrained cfg of one manifest record: its sources, numbers and notes on the family's."""
        fields = self.pretrained_cfg(**weights.cfg)
        size = int((fields.get("input_size") or (3, 224, 224))[-1])
        fields["notes"] = tuple(n for n in (weights.summary(size),) if n) + weights.notes
        if self.rehosts(weights):
            fields["hf_hub_id"] = hub_repo_id(weights.model, weights.tag)
        elif weights.official_hub is not None:
            fields["hf_hub_id"] = weights.official_hub.hf_hub_id
            if weights.official_hub.filename:
                fields["hf_hub_filename"] = weights.official_hub.filename
        fields["url"] = weights.official_url.url if weights.official_url is not None else ""
        return fields

    def default_cfgs(self) -> dict[str, Any]:
        """timm's ``default_cfgs`` for the family, generated from its release manifest."""
        return generate_default_cfgs({w.name: self.tag_cfg(w) for w in self.weights})

    def build(self, model_cls: type[torch.nn.Module], variant: str, pretrained: bool = False, **kwargs: Any):
        """``build_model_with_cfg`` with the family's converter, feature cfg and weight sources.

        With ``pretrained=True`` and no source of the caller's own, the weights come from
        :func:`attnzoo.weights.fetch_weights` (attnzoo's Hub copy, then the official sources) and are
        read through :func:`attnzoo.weights.read_state_dict` before timm loads them.
        """
        feature_cfg = dict(self.feature_cfg)
        if "out_indices" in kwargs:
            feature_cfg["out_indices"] = kwargs.pop("out_indices")
        if pretrained:
            kwargs = self._with_fetched_weights(variant, kwargs)
        model = build_model_with_cfg(
            model_cls,
            variant,
            pretrained,
            pretrained_filter_fn=self.converter,
            feature_cfg=feature_cfg,
            **kwargs,
        )
        for module in model.modules():  # the loaded tensors must not live on in the cfg
            for cfg in (getattr(module, "pretrained_cfg", None), getattr(module, "default_cfg", None)):
                if isinstance(cfg, dict):
                    cfg.pop("state_dict", None)
        return model

    def _with_fetched_weights(self, variant: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        cfg = kwargs.get("pretrained_cfg")
        overlay = dict(kwargs.get("pretrained_cfg_overlay") or {})
        if (cfg is not None and not isinstance(cfg, str)) or any(overlay.get(k) for k in _SOURCE_KEYS):
            return kwargs  # the caller's own cfg (e.g. timm's hf-hub: path) or file / URL / Hub id
        weights = self.weights_for(variant, cfg)
        if weights is None:
            return kwargs  # an unknown tag: timm names it
        path, _ = fetch_weights(weights, self.rehosts(weights))
        overlay.update(file=str(path), state_dict=_Borrowed(read_state_dict(path)))
        return {**kwargs, "pretrained_cfg_overlay": overlay}


_SOURCE_KEYS = ("file", "state_dict", "url", "hf_hub_id")


class _Borrowed(dict):
    """A state dict handed to timm through the pretrained cfg: cfg copies share it instead of copying
    every tensor, and :meth:`Family.build` drops it from the cfgs once the model has loaded it."""

    def __deepcopy__(self, memo: dict) -> _Borrowed:
        return self


FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Add ``family`` to :data:`FAMILIES` (once per name) and return it."""
    if family.name in FAMILIES and FAMILIES[family.name] != family:
        raise ValueError(f"family {family.name!r} is already registered")
    FAMILIES[family.name] = family
    return family


class UnknownModelError(KeyError, ValueError):
    """A model (or family) name attnzoo does not register; the message lists close matches.

    A ``KeyError`` for lookups and a ``ValueError`` for arguments, so either ``except`` catches it.
    """

    def __init__(self, name: str, known: list[str], what: str = "model") -> None:
        close = difflib.get_close_matches(str(name), known, n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        listing = "see `attnzoo list`" if what == "model" else f"known: {', '.join(known)}"
        super().__init__(f"unknown {what} {name!r}{hint} ({listing})")
        self.name = name

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def family_of(model_name: str) -> Family:
    """The family that registers ``model_name`` (a bare name, a ``name.tag`` or ``hf-hub:`` id is not)."""
    if timm.is_model(model_name):
        module = timm.models.model_entrypoint(model_name).__module__
        for family in FAMILIES.values():
            if family.module == module:
                return family
    known = [name for family in FAMILIES.values() for name in family.models()]
    raise UnknownModelError(model_name, known)

"""One record per model family, declared once in its backbone module.

A :class:`Family` holds what attnzoo knows about a family as a whole: the paper, the official code
and its licence, the checkpoint converter, the pretrained-cfg fields its variants share, official
release files, and the parity goldens that check it. The backbone module writes its entry points out
with timm's ``@register_model`` (so ``grep register_model`` finds every model) and builds each variant
with :meth:`Family.build`; the family's models are the entry points that module registers, so no
side table lists them again.

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
from attnzoo.backbones._release import with_release_file

__all__ = [
    "FAMILIES",
    "Converter",
    "DenseLayout",
    "Family",
    "StateDict",
    "UnknownModelError",
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
        license: licence of the official code / weights (a Hub licence id, e.g. ``'mit'``).
        converter: official checkpoint -> attnzoo state dict (also timm's ``pretrained_filter_fn``).
        dense: how its models serve as detection / segmentation backbones (:class:`DenseLayout`).
        cfg: the pretrained-cfg fields every variant shares where they differ from timm's
            ``PretrainedCfg`` defaults (224 px, ImageNet mean / std, bicubic, crop 0.875, 1000 classes).
        releases: variant -> official release URL whose file name says nothing (downloaded under the
            variant's own name, see :mod:`attnzoo.backbones._release`).
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
    cfg: Mapping[str, Any] = field(default_factory=dict)
    releases: Mapping[str, str] = field(default_factory=dict)
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

    def default_cfgs(self, cfgs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """timm's ``default_cfgs`` for ``{'model.tag': fields}``, each on top of :meth:`pretrained_cfg`."""
        return generate_default_cfgs({tag: self.pretrained_cfg(**fields) for tag, fields in cfgs.items()})

    def build(self, model_cls: type[torch.nn.Module], variant: str, pretrained: bool = False, **kwargs: Any):
        """``build_model_with_cfg`` with the family's converter, feature cfg and release downloads."""
        feature_cfg = dict(self.feature_cfg)
        if "out_indices" in kwargs:
            feature_cfg["out_indices"] = kwargs.pop("out_indices")
        kwargs = with_release_file(variant, pretrained, self.releases, kwargs)
        return build_model_with_cfg(
            model_cls,
            variant,
            pretrained,
            pretrained_filter_fn=self.converter,
            feature_cfg=feature_cfg,
            **kwargs,
        )


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

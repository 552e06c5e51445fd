"""The release manifest: for every variant and pretrained tag, where its weights come from.

A family declares one :class:`Weights` record per tag next to its models (``Family.weights``). The
records are the only place a weight source is written: timm's pretrained cfgs, the Hub-first loader
(:mod:`attnzoo.weights.fetch`), ``attnzoo release`` and the README's weights table are all generated
from them.

Re-hosting rule: attnzoo publishes a converted copy (``<org>/<model>.<tag>`` on the Hugging Face Hub)
only when the official licence allows redistribution and the official weights are not already on the
Hub; weights under no licence (MALA, InLine) are linked, never re-hosted.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_HUB_ORG",
    "REDISTRIBUTABLE_LICENSES",
    "Source",
    "Weights",
    "hub_org",
    "hub_repo_id",
]

DEFAULT_HUB_ORG = "attnzoo"

# Hub licence ids whose terms allow re-publishing the weights with attribution (the copy keeps the
# licence). Anything else ("unknown", "other", a licence that forbids redistribution) is linked only.
REDISTRIBUTABLE_LICENSES = frozenset(
    (
        "mit",
        "apache-2.0",
        "bsd-2-clause",
        "bsd-3-clause",
        "cc-by-4.0",
        "cc-by-sa-4.0",
        "cc-by-nc-4.0",
        "cc-by-nc-sa-4.0",
    )
)


def hub_org() -> str:
    """The Hub organisation attnzoo's converted weights live under (``ATTNZOO_HUB_ORG``, default attnzoo)."""
    return os.environ.get("ATTNZOO_HUB_ORG") or DEFAULT_HUB_ORG


def hub_repo_id(model: str, tag: str, org: str | None = None) -> str:
    """``<org>/<model>.<tag>``, timm's naming for one pretrained tag of one model."""
    return f"{org or hub_org()}/{model}.{tag}"


@dataclass(frozen=True)
class Source:
    """One place the official weights of a tag are published: a direct URL or a file in a Hub repo.

    Args:
        url: a direct download link (official release asset, share link with ``?dl=1``...).
        hf_hub_id: a Hugging Face Hub repo; ``filename`` is the file in it (default: timm's
            ``model.safetensors``).
        sha256: the file's SHA-256 when the release states it; checked after download when given.
    """

    url: str = ""
    hf_hub_id: str = ""
    filename: str = ""
    sha256: str = ""

    def __post_init__(self) -> None:
        if bool(self.url) == bool(self.hf_hub_id):
            raise ValueError(f"a Source is either a url or a hf_hub_id, not {self}")
        if self.filename and not self.hf_hub_id:
            raise ValueError(f"filename belongs to a Hub source: {self}")

    @property
    def hub_filename(self) -> str:
        return self.filename or "model.safetensors"

    def describe(self) -> str:
        """``https://...`` or ``hf-hub:<repo>/<file>``, as messages and the manifest table show it."""
        return self.url or f"hf-hub:{self.hf_hub_id}/{self.hub_filename}"


@dataclass(frozen=True)
class Weights:
    """One pretrained tag of one model, as the official release publishes it.

    Args:
        model: the registered model name (``'biformer_tiny'``).
        tag: timm's pretrained tag (``'in1k'``); ``'untrained'`` for a variant without released weights.
        sources: the official files, in the order they are tried; empty when none were released.
        top1: the official ImageNet-1k top-1 (%), at the tag's input size.
        params_m, gflops: the official parameter count (M) and GFLOPs, where the release states them.
        reported_by: where ``top1`` / ``params_m`` / ``gflops`` are quoted from.
        cfg: pretrained-cfg fields of this tag on top of the family's (``crop_pct``, ``input_size``...).
        notes: anything else a user should know about these weights (shown in the cfg and model card).
    """

    model: str
    tag: str
    sources: tuple[Source, ...] = ()
    top1: float | None = None
    params_m: float | None = None
    gflops: float | None = None
    reported_by: str = "official README"
    cfg: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.tag == "untrained") != (not self.sources):
            raise ValueError(
                f"{self.name}: the tag 'untrained' is for a variant without sources, and only for one"
            )

    @property
    def name(self) -> str:
        """``model.tag``, timm's pretrained-cfg key."""
        return f"{self.model}.{self.tag}"

    @property
    def released(self) -> bool:
        return bool(self.sources)

    @property
    def official_hub(self) -> Source | None:
        """The first official source on the Hub, if the release is there."""
        return next((s for s in self.sources if s.hf_hub_id), None)

    @property
    def official_url(self) -> Source | None:
        """The first official direct-download source."""
        return next((s for s in self.sources if s.url), None)

    def summary(self, input_size: int) -> str:
        """One line with the official numbers, e.g. for the cfg notes and model card."""
        if self.top1 is None:
            return ""
        parts = [f"official ImageNet-1k top-1 {self.top1} at {input_size}px"]
        if self.params_m is not None:
            parts.append(f"{self.params_m} M params")
        if self.gflops is not None:
            parts.append(f"{self.gflops} GFLOPs")
        return f"{', '.join(parts)} ({self.reported_by})"

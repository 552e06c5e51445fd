"""Shallow builds of each family's smallest model for the whole-graph checks (ONNX export, fullgraph
compile): the same layers with one block (or one shifted pair) per stage, so the default tier traces
every layer type at a fraction of the cost; the slow tier traces the full models.

A family missing here is traced at full depth (still correct, only slower): a new family is covered
without an entry.
"""

from __future__ import annotations

from typing import Any

from attnzoo.zoo.registry import family_of

SHALLOW: dict[str, dict[str, Any]] = {
    "biformer": dict(depths=(1, 1, 1, 1)),
    "convit": dict(depth=2, local_up_to_layer=1),  # one GPSA and one MHSA block
    "infvit": dict(depth=2),
    "inline_cswin": dict(depth=(1, 1, 1, 1)),
    "inline_deit": dict(depth=2),
    "inline_pvt": dict(depths=(1, 1, 1, 1)),
    "inline_swin": dict(depths=(2, 2, 2, 2)),  # a plain and a shifted block per stage
    "karat": dict(depth=2),
    "mala": dict(depths=(1, 1, 1, 1)),
    "overlock": dict(depth=(1, 1, 1, 1), sub_depth=(1, 1)),
    "sparsifiner": dict(depth=2),
}


def shallow_kwargs(name: str) -> dict[str, Any]:
    """The model kwargs of ``name``'s shallow build ({} where the family has none)."""
    return dict(SHALLOW.get(family_of(name), {}))

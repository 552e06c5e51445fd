"""The official models the GPU suite compares against, imported from ``benchmarks/.anchors/<repo>/``.

The official code is not vendored: ``benchmarks/fetch_anchors.sh`` copies the files needed into that
(gitignored) folder. Each loader puts only its own repo folder on ``sys.path`` while it imports, and
raises :class:`AnchorMissing` (naming the script) when the files are not there. The copied files are
never edited; what they need from a newer environment is shimmed here:

- BiFormer imports ``fairscale.nn.checkpoint.checkpoint_wrapper`` (only used with
  ``use_checkpoint_stages``): a stand-in module is provided when fairscale is not installed;
- BiFormer's ``@register_model`` would overwrite attnzoo's ``biformer_tiny`` in timm's registry:
  ``timm.models.register_model`` is a no-op while the official module imports.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import torch

# ATTNZOO_ANCHORS overrides the folder (the tests point it at an empty one: anchors missing)
ANCHORS = Path(os.environ.get("ATTNZOO_ANCHORS", Path(__file__).resolve().parent / ".anchors"))
BIFORMER = "BiFormer"
INFSA = "infinite-self-attention"

__all__ = ["ANCHORS", "AnchorMissing", "official_biformer", "official_infvit"]


class AnchorMissing(RuntimeError):
    """The official code of an anchor is not in ``benchmarks/.anchors``."""


@contextlib.contextmanager
def _on_path(repo: str, needed: tuple[str, ...]) -> Iterator[None]:
    """``benchmarks/.anchors/<repo>`` on ``sys.path`` for the block only; clear error if files lack."""
    root = ANCHORS / repo
    missing = [f for f in needed if not (root / f).is_file()]
    if missing:
        raise AnchorMissing(
            f"official {repo} code not found ({', '.join(missing)} under {root}); "
            "run benchmarks/fetch_anchors.sh"
        )
    sys.path.insert(0, str(root))
    try:
        yield
    finally:
        sys.path.remove(str(root))


@contextlib.contextmanager
def _timm_registration_off() -> Iterator[None]:
    """Keep official ``@register_model`` functions out of timm's registry (name clashes with attnzoo)."""
    import timm.models

    saved = timm.models.register_model
    timm.models.register_model = lambda fn: fn
    try:
        yield
    finally:
        timm.models.register_model = saved


def _fairscale_shim() -> None:
    """A ``fairscale.nn.checkpoint`` stand-in when fairscale is absent (BiFormer imports it at top)."""
    if "fairscale" in sys.modules or importlib.util.find_spec("fairscale") is not None:
        return
    names = ("fairscale", "fairscale.nn", "fairscale.nn.checkpoint")
    mods = {name: types.ModuleType(name) for name in names}
    mods["fairscale.nn.checkpoint"].checkpoint_wrapper = lambda module, *args, **kwargs: module
    for name, mod in mods.items():
        sys.modules.setdefault(name, mod)


def official_biformer(variant: str = "biformer_tiny") -> torch.nn.Module:
    """The official BiFormer builder ``models/biformer.py::<variant>`` (random init)."""
    needed = ("models/biformer.py", "models/_common.py", "ops/bra_legacy.py")
    with _on_path(BIFORMER, needed), _timm_registration_off():
        _fairscale_shim()
        module = importlib.import_module("models.biformer")
    return getattr(module, variant)()


def official_infvit(variant: str = "pure_infsa", img_size: int = 224) -> torch.nn.Module:
    """The official ``examples/custom_transformer.py::ImageClassifier`` at the paper's 4-layer ViT-L/16
    geometry (what attnzoo's ``infvit_{pure,linear}_4l`` convert from)."""
    needed = ("infsa/__init__.py", "infsa/core.py", "infsa/attention.py", "infsa/convert.py")
    needed += ("examples/custom_transformer.py",)
    with _on_path(INFSA, needed):
        spec = importlib.util.spec_from_file_location(
            "infsa_official_example", ANCHORS / INFSA / "examples" / "custom_transformer.py"
        )
        module = importlib.util.module_from_spec(spec)
        saved_path = list(sys.path)
        try:
            spec.loader.exec_module(module)  # it inserts its repo root into sys.path itself
        finally:
            sys.path[:] = saved_path
    return module.ImageClassifier(
        img_size=img_size, embed_dim=1024, num_heads=16, num_layers=4, variant=variant
    )

"""Every timm import that is not timm's public API, in one place.

timm's underscore modules (``_features``, ``_hub``, ``_registry``) change between releases; attnzoo
reaches them only through this module, so a timm upgrade that moves one is a one-file fix. Tested
with timm 1.0.x (see pyproject.toml).
"""

from __future__ import annotations

from timm.models import _registry
from timm.models._features import FeatureGetterNet, feature_take_indices
from timm.models._hub import generate_readme, save_for_hf
from timm.models.byoanet import model_cfgs as byoanet_model_cfgs

__all__ = [
    "FeatureGetterNet",
    "byoanet_model_cfgs",
    "feature_take_indices",
    "generate_readme",
    "registered_models",
    "save_for_hf",
]


def registered_models(module: str) -> list[str]:
    """Names of the models whose entry points live in ``module``, in registration order.

    timm's public ``list_models(module=...)`` keys modules by their last dotted part, where
    ``attnzoo.backbones.convit`` and ``timm.models.convit`` collide; the entry points themselves don't.
    """
    return [name for name, fn in _registry._model_entrypoints.items() if fn.__module__ == module]

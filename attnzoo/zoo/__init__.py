"""Registry queries, checkpoint conversion, pretrained sources, model facts, export and benchmarking."""

from attnzoo.zoo.convert import convert_official, load_for_model
from attnzoo.zoo.registry import (
    DENSE_GOLDENS,
    GOLDEN_MODELS,
    UnknownModelError,
    family_of,
    list_families,
    list_models,
    require_model,
)

__all__ = [
    "DENSE_GOLDENS",
    "GOLDEN_MODELS",
    "UnknownModelError",
    "convert_official",
    "family_of",
    "list_families",
    "list_models",
    "load_for_model",
    "require_model",
]

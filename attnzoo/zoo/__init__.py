"""Registry queries, checkpoint conversion, pretrained sources, model facts, export and benchmarking."""

from attnzoo.zoo.convert import convert_official, unwrap_checkpoint
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
    "require_model",
    "unwrap_checkpoint",
]

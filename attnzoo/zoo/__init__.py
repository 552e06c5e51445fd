"""Registry queries, checkpoint conversion, pretrained sources, export and benchmarking."""

from attnzoo.zoo.convert import convert_official, unwrap_checkpoint
from attnzoo.zoo.parity import GOLDEN_MODELS
from attnzoo.zoo.registry import family_of, list_families, list_models

__all__ = [
    "GOLDEN_MODELS",
    "convert_official",
    "family_of",
    "list_families",
    "list_models",
    "unwrap_checkpoint",
]

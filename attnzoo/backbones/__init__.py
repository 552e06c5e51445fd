"""One module per model family; importing this package registers every family with timm."""

from attnzoo.backbones import biformer, convit, halonet, infvit  # noqa: F401  (registration side effects)
from attnzoo.backbones._registry import CONVERTERS, FAMILIES

__all__ = ["CONVERTERS", "FAMILIES"]

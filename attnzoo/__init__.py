"""attnzoo: vision backbones built around modern attention mixers, registered with timm.

``import attnzoo`` registers every model with timm, so ``timm.create_model(name)`` works.
"""

from attnzoo import backbones  # noqa: F401  (registers the models with timm)
from attnzoo.zoo import UnknownModelError, convert_official, list_models

__version__ = "0.1.0"
__all__ = ["UnknownModelError", "__version__", "convert_official", "list_models"]

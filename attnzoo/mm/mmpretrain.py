"""mmpretrain 1.2.0 next to transformers >= 5: import it with its multimodal models switched off.

mmpretrain turns its multimodal models (BLIP, BLIP-2, LLaVA, ...) on whenever transformers >= 4.28 and
pycocotools are installed (``mmpretrain.utils.dependency.WITH_MULTIMODAL``). Its BLIP code imports
``apply_chunking_to_forward``, ``find_pruneable_heads_and_indices`` and ``prune_linear_layer`` from
``transformers.modeling_utils``, which transformers 5 no longer has; a bare ``except`` then leaves
``PreTrainedModel = None`` and ``import mmpretrain.models`` dies with "TypeError: NoneType takes no
arguments". mmdet imports ``mmpretrain.models`` whenever mmpretrain is installed (its ReID data
preprocessor) and catches only ``ImportError``, so the same error breaks every mmdet model build.

:func:`skip_broken_multimodal` clears that flag before ``mmpretrain.models`` is imported; mmpretrain
then registers its placeholders for the multimodal models (which raise when built) and everything else
works. ``import attnzoo.mm`` (e.g. ``custom_imports=dict(imports=['attnzoo.mm'])``) calls it.
"""

from __future__ import annotations

import importlib.util
import sys
from importlib import metadata

__all__ = ["multimodal_import_breaks", "skip_broken_multimodal"]

# The first transformers release without the ``modeling_utils`` helpers mmpretrain 1.2.0's BLIP imports.
_BREAKING_TRANSFORMERS = 5


def multimodal_import_breaks() -> bool:
    """Whether the installed mmpretrain and transformers make ``import mmpretrain.models`` fail.

    Read from the package metadata: importing ``transformers.modeling_utils`` to probe it takes seconds.
    """
    if importlib.util.find_spec("mmpretrain") is None:
        return False
    try:
        major = int(metadata.version("transformers").split(".")[0])
    except (metadata.PackageNotFoundError, ValueError):
        return False
    return major >= _BREAKING_TRANSFORMERS


def skip_broken_multimodal() -> bool:
    """Switch mmpretrain's multimodal models off when they cannot be imported; returns whether it did.

    A no-op once ``mmpretrain.models`` is imported (the flag is read at its import).
    """
    if "mmpretrain.models" in sys.modules or not multimodal_import_breaks():
        return False
    from mmpretrain.utils import dependency

    dependency.WITH_MULTIMODAL = False
    return True

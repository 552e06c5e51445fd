"""Where every attnzoo model records its family and its official-checkpoint converter.

Backbone modules decorate their entry points with :func:`register_family_model`, which also
registers them with timm, so ``timm.create_model`` and ``attnzoo.zoo`` see the same names.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from timm.models import register_model

StateDict = dict[str, torch.Tensor]
Converter = Callable[[StateDict, "torch.nn.Module | None"], StateDict]

FAMILIES: dict[str, list[str]] = {}
CONVERTERS: dict[str, Converter] = {}


def register_family_model(family: str, converter: Converter) -> Callable[[Callable], Callable]:
    """Register a model entry point with timm under ``family``, with its checkpoint converter."""

    def wrap(fn: Callable) -> Callable:
        fn = register_model(fn)
        FAMILIES.setdefault(family, []).append(fn.__name__)
        CONVERTERS[fn.__name__] = converter
        return fn

    return wrap

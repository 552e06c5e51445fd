"""Queries over the models attnzoo registers, read from the family records."""

from __future__ import annotations

from attnzoo.backbones import FAMILIES, UnknownModelError
from attnzoo.backbones import family_of as _family_record

__all__ = [
    "DENSE_GOLDENS",
    "GOLDEN_MODELS",
    "UnknownModelError",
    "family_of",
    "list_families",
    "list_models",
    "require_model",
]


def list_families() -> list[str]:
    """Family names in registration order."""
    return list(FAMILIES)


def list_models(family: str | None = None) -> list[str]:
    """Every attnzoo model name, or those of one family."""
    if family is not None:
        if family not in FAMILIES:
            raise UnknownModelError(family, list(FAMILIES), what="family")
        return FAMILIES[family].models()
    return [name for record in FAMILIES.values() for name in record.models()]


def require_model(model_name: str) -> str:
    """``model_name`` if attnzoo registers it, else :class:`UnknownModelError` naming close matches."""
    _family_record(model_name)
    return model_name


def family_of(model_name: str) -> str:
    """The name of the family that registers ``model_name``."""
    return _family_record(model_name).name


# Parity golden (file stem in tests/data) -> the model it checks, gathered from the family records.
GOLDEN_MODELS: dict[str, str] = {
    golden: model for record in FAMILIES.values() for golden, model in record.goldens.items()
}

# Dense-backbone golden -> (model, dense form), from the family records.
DENSE_GOLDENS: dict[str, tuple[str, str]] = {
    golden: target for record in FAMILIES.values() for golden, target in record.dense_goldens.items()
}

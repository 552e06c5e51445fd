"""Queries over the models attnzoo registers."""

from __future__ import annotations

from attnzoo.backbones import FAMILIES


def list_families() -> list[str]:
    """Family names in registration order."""
    return list(FAMILIES)


def list_models(family: str | None = None) -> list[str]:
    """Every attnzoo model name, or those of one family."""
    if family is not None:
        if family not in FAMILIES:
            raise KeyError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
        return list(FAMILIES[family])
    return [name for names in FAMILIES.values() for name in names]


def require_model(model_name: str) -> None:
    """Raise ``ValueError`` naming ``model_name`` unless attnzoo registers it."""
    if model_name not in list_models():
        raise ValueError(f"unknown model {model_name!r} (see `attnzoo list`)")


def family_of(model_name: str) -> str:
    """The family that registered ``model_name``."""
    for family, names in FAMILIES.items():
        if model_name in names:
            return family
    raise KeyError(f"unknown attnzoo model {model_name!r}; see `attnzoo list`")

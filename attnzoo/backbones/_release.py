"""Pretrained weights that live at an official release URL whose file name says nothing.

torch.hub (and timm's URL loader) caches a download under the URL's last path component. Release links
such as OneDrive's ``.../root/content`` share that component across variants, so a second variant would
be served the first one's cached file. Families with such links download under the variant's own name
and hand timm the local file instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attnzoo._timm import download_cached_file

__all__ = ["with_release_file"]

_SOURCE_KEYS = ("file", "state_dict", "url", "hf_hub_id")


def with_release_file(
    variant: str, pretrained: bool, releases: Mapping[str, str], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """``kwargs`` for ``build_model_with_cfg``, pointing the pretrained source at a local download.

    Only when weights are asked for, the variant has a release URL and the caller named no source of
    their own (``pretrained_cfg`` or a file / URL / Hub id in ``pretrained_cfg_overlay``).
    """
    overlay = dict(kwargs.get("pretrained_cfg_overlay") or {})
    if (
        not pretrained
        or variant not in releases
        or kwargs.get("pretrained_cfg") is not None
        or any(overlay.get(k) for k in _SOURCE_KEYS)
    ):
        return kwargs
    source = (releases[variant], f"{variant}.pth")
    overlay["file"] = download_cached_file(source, check_hash=False, progress=True)
    return {**kwargs, "pretrained_cfg_overlay": overlay}

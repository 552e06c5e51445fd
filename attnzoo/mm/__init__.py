"""OpenMMLab adapter: ``AttnZooBackbone`` in mmdet's and mmseg's ``MODELS`` registries.

Needs mmengine and at least one of mmdet / mmseg (``pip install attnzoo[mm]``); ``import attnzoo``
never imports this package. Configs load it with ``custom_imports=dict(imports=['attnzoo.mm'])``.
"""

from __future__ import annotations

import importlib

try:
    import mmengine  # noqa: F401
except ImportError as err:  # pragma: no cover - depends on the install
    raise ImportError(
        "attnzoo.mm needs the OpenMMLab stack (mmengine + mmdet and/or mmsegmentation); "
        "install it with `pip install attnzoo[mm]` (mmcv 2.1 needs a source build, see README)"
    ) from err

from mmengine.config.utils import MODULE2PACKAGE

from attnzoo.mm.backbone import AttnZooBackbone
from attnzoo.mm.checkpoint import allow_mmengine_checkpoints
from attnzoo.mm.distributed import CpuDistributedDataParallel

__all__ = ["REGISTERED_IN", "AttnZooBackbone", "CpuDistributedDataParallel", "allow_mmengine_checkpoints"]

# `_base_ = ['attnzoo::det/...']` resolves to attnzoo/.mim/configs once this module is imported (mmengine
# only knows OpenMMLab's own packages; tools/train.py imports attnzoo.mm before it reads the config).
MODULE2PACKAGE.setdefault("attnzoo", "attnzoo")

REGISTERED_IN: list[str] = []
for _scope in ("mmdet", "mmseg"):
    try:
        _registry = importlib.import_module(f"{_scope}.registry")
    except ImportError:
        continue
    if _registry.MODELS.get("AttnZooBackbone") is not AttnZooBackbone:
        _registry.MODELS.register_module(module=AttnZooBackbone, force=True)
    REGISTERED_IN.append(_scope)
if not REGISTERED_IN:  # pragma: no cover - depends on the install
    raise ImportError("attnzoo.mm: neither mmdet nor mmsegmentation is importable")

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

from attnzoo.mm.mmpretrain import skip_broken_multimodal

# Before anything imports mmpretrain.models: with transformers >= 5 its multimodal models fail to import,
# and mmdet imports it (see attnzoo/mm/mmpretrain.py), so mmdet and mmpretrain configs would not build.
skip_broken_multimodal()

from attnzoo.mm.backbone import AttnZooBackbone  # noqa: E402
from attnzoo.mm.checkpoint import allow_mmengine_checkpoints  # noqa: E402
from attnzoo.mm.distributed import CpuDistributedDataParallel  # noqa: E402
from attnzoo.mm.optim import LayerDecayOptimWrapperConstructor  # noqa: E402

__all__ = [
    "REGISTERED_IN",
    "AttnZooBackbone",
    "CpuDistributedDataParallel",
    "LayerDecayOptimWrapperConstructor",
    "allow_mmengine_checkpoints",
]

# `_base_ = ['attnzoo::det/...']` resolves to attnzoo/.mim/configs once this module is imported (mmengine
# only knows OpenMMLab's own packages; tools/train.py imports attnzoo.mm before it reads the config).
MODULE2PACKAGE.setdefault("attnzoo", "attnzoo")

# OpenMMLab's own tools/train.py and tools/test.py load checkpoints with a plain torch.load (weights_only
# under torch >= 2.6); a config's custom_imports of attnzoo.mm is the one hook they run, so allow-list here.
allow_mmengine_checkpoints()

REGISTERED_IN: list[str] = []
for _scope in ("mmdet", "mmseg"):
    try:
        _registry = importlib.import_module(f"{_scope}.registry")
    except ImportError:
        continue
    if _registry.MODELS.get("AttnZooBackbone") is not AttnZooBackbone:
        _registry.MODELS.register_module(module=AttnZooBackbone, force=True)
    _constructors = _registry.OPTIM_WRAPPER_CONSTRUCTORS
    if _constructors.get("LayerDecayOptimWrapperConstructor") is not LayerDecayOptimWrapperConstructor:
        _constructors.register_module(module=LayerDecayOptimWrapperConstructor, force=True)
    REGISTERED_IN.append(_scope)
if not REGISTERED_IN:  # pragma: no cover - depends on the install
    raise ImportError("attnzoo.mm: neither mmdet nor mmsegmentation is importable")

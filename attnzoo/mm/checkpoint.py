"""mmengine 0.10 checkpoints under torch >= 2.6, whose ``torch.load`` defaults to ``weights_only=True``.

mmengine's runner saves its message hub (``HistoryBuffer`` holding numpy arrays) in every checkpoint
and loads them back with a plain ``torch.load``, which then refuses them ("Weights only load failed").
:func:`allow_mmengine_checkpoints` adds exactly those types to torch's allow-list, so ``load_from`` /
``--resume`` / ``tools/test.py`` work without switching the safe loader off.
"""

from __future__ import annotations

import importlib

import numpy as np
import torch

_GLOBALS = (
    "mmengine.logging.history_buffer.HistoryBuffer",
    "numpy._core.multiarray._reconstruct",
    "numpy._core.multiarray.scalar",
    "numpy.core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar",
    "numpy.ndarray",
    "numpy.dtype",
    "builtins.getattr",
)


def allow_mmengine_checkpoints() -> None:
    """Allow-list the non-tensor types an mmengine training checkpoint holds (idempotent)."""
    found = []
    for name in _GLOBALS:
        module, attr = name.rsplit(".", 1)
        try:
            found.append(getattr(importlib.import_module(module), attr))
        except (ImportError, AttributeError):
            continue
    found += [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    torch.serialization.add_safe_globals(found)

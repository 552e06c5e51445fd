"""Reading checkpoint files: one path for every file attnzoo loads, that runs no pickled code.

Official releases, timm ``train.py`` checkpoints and mmengine (mmdet / mmseg) checkpoints are torch
pickles that hold more than tensors: the training arguments (``argparse.Namespace``), yacs configs,
mmengine's message hub, numpy scalars. ``torch.load(weights_only=True)`` refuses those, and
``weights_only=False`` would run whatever the file names. :func:`read_checkpoint` tries the first and,
when only such objects are in the way, unpickles with an allow-list of torch's tensor-rebuild
functions and plain containers, in which every other object becomes an inert placeholder: the
tensors come back, nothing is called.
"""

from __future__ import annotations

import builtins
import collections
import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = ["CheckpointError", "read_checkpoint", "read_state_dict", "unwrap_checkpoint"]

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".pth.tar", ".tar")
_WRAPPER_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model", "module")


class CheckpointError(ValueError):
    """A file that is not a usable checkpoint; the message names the file and what is wrong with it."""


class _Inert:
    """Stands in for a pickled object that is neither a tensor nor a plain container.

    It accepts whatever the unpickler hands it (constructor arguments, state, items) and keeps none of
    it, so unpickling a training checkpoint cannot run code from the file.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, value: Any) -> None:
        pass

    def extend(self, values: Any) -> None:
        pass

    def __repr__(self) -> str:
        return f"<{type(self).__qualname__} (not read)>"


_ALLOWED_BUILTINS = frozenset(
    {"set", "frozenset", "dict", "list", "tuple", "slice", "complex", "int", "float", "bool", "str"}
    | {"bytes", "bytearray"}
)
_ALLOWED_TORCH_UTILS = frozenset(
    {"_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter"}
    | {"_rebuild_parameter_with_state", "_rebuild_sparse_tensor", "_rebuild_meta_tensor_no_storage"}
)


class _TensorsOnlyUnpickler(pickle.Unpickler):
    """Resolves torch's tensor-rebuild functions, dtypes and plain containers; anything else is inert."""

    _inert: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch._utils" and name in _ALLOWED_TORCH_UTILS:
            return getattr(torch._utils, name)
        if module == "torch" and (name == "Size" or isinstance(getattr(torch, name, None), torch.dtype)):
            return getattr(torch, name)
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module in ("builtins", "__builtin__") and name in _ALLOWED_BUILTINS:
            return getattr(builtins, name)
        key = (module, name)
        if key not in self._inert:
            self._inert[key] = type(name, (_Inert,), {"__module__": f"inert:{module}"})
        return self._inert[key]


class _TensorsOnlyPickle:
    """A ``pickle_module`` for ``torch.load`` whose unpickler is :class:`_TensorsOnlyUnpickler`."""

    Unpickler = _TensorsOnlyUnpickler
    load = staticmethod(lambda f, **kw: _TensorsOnlyUnpickler(f, **kw).load())
    __name__ = "attnzoo_tensors_only_pickle"


def _describe_unreadable(path: Path, err: BaseException) -> str:
    with path.open("rb") as f:
        head = f.read(64)
    if not head:
        return f"{path} is empty, not a checkpoint"
    if head.lstrip().startswith((b"<", b"<!DOCTYPE", b"{")):
        return f"{path} is a text / HTML file (a download that returned an error page?), not a checkpoint"
    if zipfile.is_zipfile(path) or head.startswith(b"PK"):
        return f"{path} is a damaged or truncated torch checkpoint ({type(err).__name__}: {err})"
    return f"{path} is not a torch checkpoint ({type(err).__name__}: {str(err).splitlines()[0]})"


def read_checkpoint(path: str | os.PathLike[str]) -> Any:
    """The object in a ``.safetensors`` or torch-pickle file, on CPU, without running pickled code.

    Raises ``FileNotFoundError`` naming the path if it is missing and :class:`CheckpointError` for a
    file that cannot be read as a checkpoint (empty, text / HTML, truncated, another format).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    if not path.is_file():
        raise CheckpointError(f"{path} is a directory, not a checkpoint file")
    if path.name.endswith(".safetensors"):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"{path} is not a readable safetensors file ({err})") from None
    if not path.name.endswith(TORCH_SUFFIXES):
        raise CheckpointError(
            f"unsupported checkpoint format {path.name!r}; expected .safetensors or one of "
            f"{', '.join(TORCH_SUFFIXES)}"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Unsupported global" not in str(err):
            raise CheckpointError(_describe_unreadable(path, err)) from None
    except Exception as err:  # noqa: BLE001 - torch's unpickler fails in many ways on a non-checkpoint
        raise CheckpointError(_describe_unreadable(path, err)) from None
    # weights_only refused a non-tensor object (training args, configs): read the tensors only.
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_TensorsOnlyPickle)
    except Exception as err:  # noqa: BLE001 - any failure here means the file is not a checkpoint
        raise CheckpointError(_describe_unreadable(path, err)) from None


def unwrap_checkpoint(checkpoint: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The tensor dict inside a training checkpoint ({'model': ...}, {'state_dict': ...}, DDP 'module.')."""
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f"{source} holds a {type(checkpoint).__name__}, not a state dict")
    sd: Mapping = checkpoint
    for key in _WRAPPER_KEYS:
        if isinstance(sd.get(key), Mapping):
            sd = sd[key]
            break
    out = {}
    for key, value in sd.items():
        if not isinstance(value, torch.Tensor):
            continue
        out[key[len("module.") :] if key.startswith("module.") else key] = value
    if not out:
        raise CheckpointError(f"{source} holds no tensors (expected a state dict or {{'model': state_dict}})")
    return out


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The state dict in a checkpoint file, training wrappers removed (see :func:`read_checkpoint`)."""
    return unwrap_checkpoint(read_checkpoint(path), source=str(path))

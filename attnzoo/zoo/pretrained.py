"""Reading checkpoint files from disk without executing pickled code."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from attnzoo.zoo.convert import unwrap_checkpoint

__all__ = ["load_checkpoint_file"]

_TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".pth.tar")


def load_checkpoint_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The state dict in a ``.safetensors`` / ``.pth`` / ``.bin`` file, on CPU.

    Torch pickles are read with ``weights_only=True`` (official checkpoints are downloaded from the
    web, so they must not run code), and training wrappers ({'model': ...}, {'state_dict': ...},
    DDP's ``module.`` prefix) are removed, so the result can go straight to ``convert_official``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    if path.name.endswith(".safetensors"):
        from safetensors.torch import load_file

        return unwrap_checkpoint(load_file(str(path), device="cpu"))
    if not path.name.endswith(_TORCH_SUFFIXES):
        raise ValueError(
            f"unsupported checkpoint format {path.name!r}; expected .safetensors or one of "
            f"{', '.join(_TORCH_SUFFIXES)}"
        )
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path} holds a {type(checkpoint).__name__}, not a state dict")
    return unwrap_checkpoint(checkpoint)

"""Official checkpoints -> attnzoo state dicts."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from attnzoo.backbones import family_of

_WRAPPER_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model", "module")


def unwrap_checkpoint(checkpoint: Mapping) -> dict[str, torch.Tensor]:
    """The tensor dict inside a training checkpoint ({'model': ...}, {'state_dict': ...}, DDP 'module.')."""
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
        raise ValueError("checkpoint holds no tensors (expected a state dict or {'model': state_dict})")
    return out


def convert_official(
    model_name: str, state_dict: Mapping, model: torch.nn.Module | None = None
) -> dict[str, torch.Tensor]:
    """Map an official checkpoint of ``model_name`` (its key names and layouts) onto attnzoo's keys.

    ``model_name`` may carry a pretrained tag (``biformer_tiny.in1k``); an unknown name raises
    :class:`attnzoo.UnknownModelError`. With ``model``, the result is also checked against it.
    """
    name = model_name.removeprefix("hf-hub:").split(".")[0]
    return family_of(name).converter(unwrap_checkpoint(state_dict), model)

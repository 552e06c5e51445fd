"""Checkpoint files -> attnzoo state dicts, whatever trained them.

Three layouts are told apart by their contents:

* official releases (any key naming a family's converter knows, bare or wrapped in ``{'model': ...}``);
* attnzoo's own keys: a Hub folder's ``model.safetensors`` or a timm ``train.py`` checkpoint
  (``CheckpointSaver``: ``{'state_dict', 'state_dict_ema'?, 'args', 'epoch', ...}``);
* an mmdet / mmseg checkpoint of a detector or segmentor built on :class:`attnzoo.mm.AttnZooBackbone`
  (``{'meta', 'state_dict', 'message_hub', ...}``, the backbone under ``backbone.model.``): its
  backbone becomes a headless classifier's weights (0 classes).

Every file is read by :func:`attnzoo.weights.read_checkpoint`, which runs no pickled code.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

import timm
import torch

from attnzoo.backbones import family_of
from attnzoo.weights import CheckpointError, read_checkpoint, unwrap_checkpoint

__all__ = ["checkpoint_classes", "convert_official", "load_for_model", "load_into"]

# AttnZooBackbone keeps the features_only model as ``self.model``; a detector keeps the backbone as
# ``backbone``.
_ADAPTER_PREFIX = "backbone.model."
_EMA_ENTRIES = ("state_dict_ema", "model_ema")  # timm train.py; DeiT-style official training scripts
_LIVE_ENTRIES = ("state_dict", "model")


def _bare_name(model_name: str) -> str:
    return model_name.removeprefix("hf-hub:").split(".")[0]


def convert_official(
    model_name: str, state_dict: Mapping, model: torch.nn.Module | None = None
) -> dict[str, torch.Tensor]:
    """Map an official checkpoint of ``model_name`` (its key names and layouts) onto attnzoo's keys.

    ``model_name`` may carry a pretrained tag (``biformer_tiny.in1k``); an unknown name raises
    :class:`attnzoo.UnknownModelError`. attnzoo's own keys pass through unchanged. With ``model``,
    the result is also fitted (position embeddings resampled) and checked against it.
    """
    family = family_of(_bare_name(model_name))
    return family.converter(unwrap_checkpoint(state_dict), model)


def load_for_model(
    model_name: str, path: str | os.PathLike[str], ema: bool = False, **model_kwargs: Any
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The weights in checkpoint file ``path`` for ``model_name``, in attnzoo's keys, and notes.

    ``ema``: take the file's EMA weights (an error if it has none); by default the trained weights
    themselves. The notes say what the user should know about the result: which entry was read, keys
    dropped (a dense form's modules, which the classifier does not have) and parameters the file does
    not hold (kept at their initial values). ``model_kwargs`` are the ones the file's model was built
    with (an mm checkpoint's backbone is matched against ``timm.create_model(model_name, **kwargs)``).

    Raises ``FileNotFoundError``, :class:`attnzoo.weights.CheckpointError` for a file that is no
    checkpoint, and :class:`attnzoo.UnknownModelError` for an unknown model.
    """
    name = _bare_name(model_name)
    family_of(name)  # an unknown model fails before the file is read
    source = str(path)
    tensors, notes = _pick_weights(read_checkpoint(path), ema, source)
    if any(key.startswith(_ADAPTER_PREFIX) for key in tensors):
        tensors, adapter_notes = _from_adapter(name, tensors, model_kwargs)
        notes += adapter_notes
    return convert_official(name, tensors), notes


def checkpoint_classes(model_name: str, state_dict: Mapping[str, torch.Tensor]) -> int:
    """The class count of a converted checkpoint's classifier (0 for a headless checkpoint)."""
    head = timm.models.get_pretrained_cfg(_bare_name(model_name)).classifier
    for name in (head,) if isinstance(head, str) else tuple(head or ()):
        weight = state_dict.get(f"{name}.weight")
        if weight is not None:
            return int(weight.shape[0])
    return 0


def load_into(
    model: torch.nn.Module, model_name: str, state_dict: Mapping[str, torch.Tensor], source: str | os.PathLike
) -> None:
    """Load converted weights into ``model``: every parameter from ``state_dict``, no key left over.

    Buffers a checkpoint may lack (index tables the model builds) keep their built values. A
    checkpoint that does not fit raises ``ValueError`` naming ``source`` and ``model_name``.
    """
    try:
        fitted = convert_official(model_name, dict(state_dict), model)
    except ValueError as err:
        raise ValueError(f"{source} does not fit {model_name}: {err}") from None
    result = model.load_state_dict(fitted, strict=False)
    params = {name for name, _ in model.named_parameters()}
    missing = sorted(set(result.missing_keys) & params)
    if missing or result.unexpected_keys:
        raise ValueError(
            f"{source} does not fit {model_name}: missing parameters {missing[:5]}, "
            f"unexpected keys {result.unexpected_keys[:5]}"
        )


# ------------------------------------------------------------------------------ which weights
def _pick_weights(checkpoint: Any, ema: bool, source: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The trained (or, with ``ema``, the averaged) weights of a checkpoint, and a note on which."""
    if not isinstance(checkpoint, Mapping):
        return unwrap_checkpoint(checkpoint, source), []  # names what the file holds instead
    entries = {k: v for k, v in checkpoint.items() if isinstance(v, Mapping)}
    if "ema_state_dict" in entries and "state_dict" in entries:
        # mmengine's EMAHook swaps the averaged weights into 'state_dict' (so the file deploys with
        # them) and keeps the trained ones, 'module.'-prefixed, in 'ema_state_dict'.
        if ema:
            return unwrap_checkpoint(entries["state_dict"], source), ["EMA weights (mmengine's 'state_dict')"]
        swapped = entries["ema_state_dict"]
        trained = {k.removeprefix("module."): v for k, v in swapped.items() if k.startswith("module.")}
        note = "trained weights (mmengine's 'ema_state_dict'); its 'state_dict' holds the EMA ones: --ema"
        return unwrap_checkpoint(trained, source), [note]
    ema_entry = next((k for k in _EMA_ENTRIES if k in entries), None)
    live_entry = next((k for k in _LIVE_ENTRIES if k in entries), None)
    if ema:
        if ema_entry is None:
            raise CheckpointError(
                f"{source} holds no EMA weights (no {', '.join(map(repr, _EMA_ENTRIES))} or mmengine "
                "'ema_state_dict' entry); leave out --ema"
            )
        return unwrap_checkpoint(entries[ema_entry], source), [f"EMA weights ('{ema_entry}')"]
    if live_entry is None:
        return unwrap_checkpoint(checkpoint, source), []
    notes = [f"weights from '{live_entry}'; the EMA ones ('{ema_entry}'): --ema"] if ema_entry else []
    return unwrap_checkpoint(entries[live_entry], source), notes


# ------------------------------------------------------------------ mmdet / mmseg with the adapter
def _from_adapter(
    model_name: str, tensors: Mapping[str, torch.Tensor], model_kwargs: Mapping[str, Any]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """A detector's / segmentor's ``backbone.model.*`` as the headless classifier's state dict.

    The features_only model drops what comes after the last feature (final norm, pre-logits): those
    parameters keep the headless model's initial values (seeded, so a conversion is reproducible). A
    dense form's own modules (output norms, extra projections) have no place in the classifier and are
    dropped. Both are listed in the notes.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        headless = timm.create_model(model_name, num_classes=0, **model_kwargs)
    own = headless.state_dict()
    dense_only = _dense_form_keys(model_name, model_kwargs) - own.keys()
    names = set(own) | dense_only
    wrapped = {
        k.removeprefix(_ADAPTER_PREFIX): v for k, v in tensors.items() if k.startswith(_ADAPTER_PREFIX)
    }
    renamed = _feature_names(wrapped, names)
    backbone = {renamed[k]: v for k, v in wrapped.items()}
    dropped = sorted(k for k in backbone if k in dense_only)
    kept = {k: v for k, v in backbone.items() if k not in dense_only}
    levels = tuple(range(len(headless.feature_info)))
    features = timm.create_model(model_name, features_only=True, out_indices=levels, **model_kwargs)
    in_features = set(_feature_names(features.state_dict(), set(own)).values())
    filled = sorted(k for k in own if k not in kept and k not in in_features)
    kept.update({k: own[k] for k in filled})
    notes = [f"{model_name} backbone of an mmdet / mmseg checkpoint (AttnZooBackbone): headless, 0 classes"]
    if dropped:
        notes.append(f"dropped (the dense form's own modules, not in the classifier): {_modules(dropped)}")
    if filled:
        kept_note = "not in the checkpoint (features_only drops them), kept at initialisation"
        notes.append(f"{kept_note}: {_modules(filled)}")
    return kept, notes


def _dense_form_keys(model_name: str, model_kwargs: Mapping[str, Any]) -> set[str]:
    """The state-dict keys of every official dense form of the model (``Family.dense.forms``)."""
    keys: set[str] = set()
    for form in family_of(model_name).dense.forms.values():
        keys |= set(timm.create_model(model_name, **{**model_kwargs, **form}).state_dict())
    return keys


def _feature_names(wrapped: Iterable[str], names: set[str]) -> dict[str, str]:
    """features_only key -> the model's own key, where one of ``names`` matches.

    timm's getter wrapper holds the model as ``model.``; its list / dict wrappers flatten the children
    of a top-level ``nn.Sequential`` into one name (``stem.conv1`` -> ``stem_conv1``). A key that
    matches nothing is kept as it is, for the load to name.
    """
    flattened = {}
    for name in names:
        parts = name.split(".", 2)
        if len(parts) == 3:
            flattened[f"{parts[0]}_{parts[1]}.{parts[2]}"] = name
    out = {}
    for key in wrapped:
        inner = key.removeprefix("model.")
        out[key] = inner if inner in names else key if key in names else flattened.get(key, key)
    return out


def _modules(keys: Iterable[str]) -> str:
    """``a.b.weight, a.b.bias, c.weight`` -> ``a.b, c``: the modules that keys belong to."""
    return ", ".join(dict.fromkeys(re.sub(r"\.[^.]+$", "", k) for k in sorted(keys)))

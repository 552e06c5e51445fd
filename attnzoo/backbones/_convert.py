"""Checks shared by the official-checkpoint converters: a checkpoint that does not fit fails loudly."""

from __future__ import annotations

import torch
from timm.layers import resample_abs_pos_embed

StateDict = dict[str, torch.Tensor]


def model_tensors(checkpoint: dict) -> StateDict:
    """The tensors of an official checkpoint as timm's filter receives it: a whole training checkpoint
    (``{'model': state_dict, 'epoch': ...}``, from a URL download) is unwrapped first."""
    if isinstance(checkpoint.get("model"), dict):
        checkpoint = checkpoint["model"]
    return {k: v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}


def detector_backbone(state_dict: StateDict) -> StateDict:
    """A detector / segmentor checkpoint's ``backbone.*`` entries, un-prefixed; any other state dict
    as it is."""
    if not any(k.startswith("backbone.") for k in state_dict):
        return state_dict
    return {k.removeprefix("backbone."): v for k, v in state_dict.items() if k.startswith("backbone.")}


def verify_against_model(state_dict: StateDict, model: torch.nn.Module | None) -> StateDict:
    """Raise if ``state_dict`` has keys the model lacks or tensors of the wrong shape.

    The classifier is exempt from the shape check: timm drops it afterwards when ``num_classes``
    differs from the checkpoint's. Missing keys are left to ``load_state_dict(strict=True)``.
    """
    if model is None:
        return state_dict
    own = model.state_dict()
    classifier = (getattr(model, "pretrained_cfg", None) or {}).get("classifier") or ""
    heads = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    unexpected = sorted(k for k in state_dict if k not in own)
    wrong = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state_dict.items()
        if k in own and v.shape != own[k].shape and not any(h and k.startswith(h + ".") for h in heads)
    ]
    if unexpected or wrong:
        name = type(model).__name__
        lines = [f"checkpoint does not match {name}:"]
        if unexpected:
            lines.append(f"  {len(unexpected)} unexpected keys, e.g. {unexpected[:5]}")
        if wrong:
            lines.append(f"  {len(wrong)} shape mismatches, e.g. {wrong[:5]}")
        raise ValueError("\n".join(lines))
    return state_dict


def fit_pos_embed(
    state_dict: StateDict, model: torch.nn.Module | None, num_prefix_tokens: int = 0
) -> StateDict:
    """Resample a checkpoint's ``pos_embed`` (``(1, prefix + h * w, C)``, square grid) to the patch grid
    ``model`` was built for, when the token counts differ (a model created with another ``img_size``).
    """
    have = state_dict.get("pos_embed")
    want = getattr(model, "pos_embed", None)
    if have is None or want is None or have.ndim != 3 or have.shape[2] != want.shape[2]:
        return state_dict
    if have.shape[1] == want.shape[1]:
        return state_dict
    grid = model.patch_embed.grid_size
    resized = resample_abs_pos_embed(have, new_size=grid, num_prefix_tokens=num_prefix_tokens)
    return {**state_dict, "pos_embed": resized}

"""Convert an official checkpoint into a Hugging Face Hub folder for timm, and push it.

The folder is what ``timm.models.push_to_hf_hub`` uploads (``model.safetensors``, timm's
``config.json``) plus a model card naming the paper, the original release, its licence and accuracy
and the converted file's SHA-256, so ``timm.create_model("hf-hub:<repo>", pretrained=True)`` loads it
(after ``import attnzoo``). The weights are converted with :func:`convert_official` and loaded into the
model strictly before anything is written; the folder is built beside the target and moved into place
only when complete, so a failed conversion leaves an existing folder as it was.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import timm
import torch

from attnzoo._timm import generate_readme, save_for_hf
from attnzoo.backbones._convert import verify_against_model
from attnzoo.zoo.convert import convert_official
from attnzoo.zoo.facts import count_params
from attnzoo.zoo.pretrained import load_checkpoint_file
from attnzoo.zoo.registry import require_model

__all__ = ["ConvertedCheckpoint", "convert_checkpoint", "model_card", "push_folder"]


@dataclass(frozen=True)
class ConvertedCheckpoint:
    """Where :func:`convert_checkpoint` wrote a model and what it holds."""

    folder: Path
    model_name: str
    num_classes: int
    params: int
    source_sha256: str


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _num_classes(model_name: str, converted: dict[str, torch.Tensor]) -> int:
    """The class count of a converted checkpoint's classifier (0 for a headless checkpoint)."""
    head = timm.models.get_pretrained_cfg(model_name).classifier
    for name in (head,) if isinstance(head, str) else tuple(head or ()):
        weight = converted.get(f"{name}.weight")
        if weight is not None:
            return int(weight.shape[0])
    return 0


def model_card(model: torch.nn.Module, model_name: str, source: str, source_sha256: str) -> dict:
    """timm's model-card fields for a converted official checkpoint (see timm's ``generate_readme``)."""
    cfg = model.pretrained_cfg
    details: dict = {
        "Model Type": "Image classification / feature backbone",
        "Model Stats": {
            "Params (M)": f"{count_params(model) / 1e6:.1f}",
            "Image size": "x".join(str(side) for side in cfg["input_size"][1:]),
        },
        "Original": cfg.get("origin_url", "unknown"),
        "Converted from": f"{source} (sha256 {source_sha256})",
    }
    if cfg.get("paper_name"):
        details["Papers"] = {cfg["paper_name"]: cfg.get("paper_ids", "")}
    if cfg.get("notes"):
        details["Notes"] = list(cfg["notes"])
    return {
        "license": cfg.get("license") or "other",
        "tags": ["image-classification", "timm", "attnzoo"],
        "description": (
            f"`{model_name}` from attnzoo: the official weights, converted to attnzoo's keys. "
            "Load with `import attnzoo, timm; timm.create_model('hf-hub:<this repo>', pretrained=True)`."
        ),
        "details": details,
    }


def convert_checkpoint(
    model_name: str, checkpoint: str | os.PathLike, folder: str | os.PathLike, overwrite: bool = False
) -> ConvertedCheckpoint:
    """Convert the official ``checkpoint`` file of ``model_name`` into a Hub-ready ``folder``.

    Raises ``ValueError`` for an unknown model or a checkpoint that does not fit it, and
    ``FileExistsError`` when ``folder`` exists and ``overwrite`` is false.
    """
    require_model(model_name)
    checkpoint, folder = Path(checkpoint), Path(folder)
    if folder.exists() and not overwrite:
        raise FileExistsError(f"{folder} exists; pass overwrite=True (--overwrite) to replace it")
    converted = convert_official(model_name, load_checkpoint_file(checkpoint))
    model = timm.create_model(model_name, pretrained=False, num_classes=_num_classes(model_name, converted))
    try:
        verify_against_model(converted, model)
    except ValueError as err:
        raise ValueError(f"{checkpoint} does not fit {model_name}: {err}") from None
    result = model.load_state_dict(converted, strict=False)
    params = {name for name, _ in model.named_parameters()}
    missing = sorted(set(result.missing_keys) & params)
    if missing or result.unexpected_keys:
        raise ValueError(
            f"{checkpoint} does not fit {model_name}: missing parameters {missing[:5]}, "
            f"unexpected keys {result.unexpected_keys[:5]}"
        )
    sha = _sha256(checkpoint)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        save_for_hf(model, str(staging), safe_serialization=True)
        card = model_card(model, model_name, checkpoint.name, sha)
        (staging / "README.md").write_text(generate_readme(card, model_name), encoding="utf-8")
        _replace(folder, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ConvertedCheckpoint(folder, model_name, model.num_classes, count_params(model), sha)


def _replace(folder: Path, staging: Path) -> None:
    """Move ``staging`` to ``folder``; an old ``folder`` is deleted only once the new one is in place."""
    if not folder.exists():
        staging.rename(folder)
        return
    old = folder.with_name(f".{folder.name}.replaced-{os.getpid()}")
    folder.rename(old)
    try:
        staging.rename(folder)
    except OSError:
        old.rename(folder)
        raise
    shutil.rmtree(old)


def push_folder(
    folder: str | os.PathLike, repo_id: str, token: str | None = None, private: bool = False
) -> str:
    """Upload a folder written by :func:`convert_checkpoint` to the Hub repo ``repo_id``; return its URL."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    for required in ("model.safetensors", "config.json", "README.md"):
        if not (folder / required).is_file():
            raise FileNotFoundError(f"{folder} has no {required}; make it with `attnzoo convert` first")
    api = HfApi(token=token)
    repo = api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(repo_id=repo.repo_id, folder_path=str(folder), commit_message="Add attnzoo weights")
    return str(repo)

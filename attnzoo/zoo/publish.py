"""Convert a checkpoint (official, timm-trained or an mmdet / mmseg fine-tune) into a Hugging Face Hub
folder for timm and transformers, and push it.

The folder is what ``timm.models.push_to_hf_hub`` uploads (``model.safetensors``, timm's
``config.json``, see :func:`save_model_files`) plus a model card (:mod:`attnzoo.zoo.card`) and
``provenance.json`` naming the source file and its SHA-256, so both
``timm.create_model("hf-hub:<repo>", pretrained=True)`` and transformers'
``AutoModelForImageClassification.from_pretrained("<repo>")`` load it (after ``import attnzoo``).
The weights are read and converted with :func:`attnzoo.zoo.convert.load_for_model` and loaded into
the model strictly before anything is written; the folder is built beside the target (``.<name>.*``,
removed however the conversion ends, Ctrl-C and SIGTERM included) and moved into place only when
complete, so a failed or interrupted conversion leaves an existing folder as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import timm
import torch

from attnzoo import __version__ as attnzoo_version
from attnzoo._timm import save_for_hf
from attnzoo.weights import Weights
from attnzoo.weights.fetch import file_sha256
from attnzoo.zoo.card import model_card
from attnzoo.zoo.convert import checkpoint_classes, load_for_model, load_into
from attnzoo.zoo.facts import count_params
from attnzoo.zoo.registry import require_model
from attnzoo.zoo.targets import check_target, replace_folder

__all__ = ["PROVENANCE_FILE", "ConvertedCheckpoint", "convert_checkpoint", "push_folder", "save_model_files"]

# What a folder was converted from (model, tag, source, its SHA-256): `attnzoo release` compares it to skip
# a repo that already holds the same release.
PROVENANCE_FILE = "provenance.json"


def save_model_files(model: torch.nn.Module, folder: Path) -> None:
    """Write ``model.safetensors`` and a ``config.json`` that timm and transformers both load.

    timm's ``save_for_hf`` also records ``num_classes`` in ``model_args``; transformers' TimmWrapper
    passes ``model_args`` to ``timm.create_model`` beside its own ``num_classes`` (a ``TypeError``:
    "got multiple values for keyword argument 'num_classes'"). The root ``num_classes`` is what both
    build the head from (timm through the pretrained cfg, transformers as ``num_labels``), so the copy
    in ``model_args`` is dropped; the other arguments (depths, sizes) stay for both to rebuild the model.
    """
    save_for_hf(model, str(folder), safe_serialization=True)
    path = folder / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config.get("model_args", {}).pop("num_classes", None)
    if config.get("model_args") == {}:
        del config["model_args"]
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class ConvertedCheckpoint:
    """Where :func:`convert_checkpoint` wrote a model and what it holds."""

    folder: Path
    model_name: str
    num_classes: int
    params: int
    source_sha256: str
    notes: tuple[str, ...] = ()  # what load_for_model says about the file (entry read, keys dropped)


def convert_checkpoint(
    model_name: str,
    checkpoint: str | os.PathLike,
    folder: str | os.PathLike,
    overwrite: bool = False,
    weights: Weights | None = None,
    repo_id: str = "<this repo>",
    source_name: str | None = None,
    ema: bool = False,
) -> ConvertedCheckpoint:
    """Convert the official ``checkpoint`` file of ``model_name`` into a Hub-ready ``folder``.

    ``weights``: the release-manifest record when ``checkpoint`` is that official release (its numbers
    go into the model card); ``repo_id``: the Hub repo the card's usage examples name;
    ``source_name``: how the card names the source (default: the file name). ``checkpoint`` may also be
    a timm ``train.py`` or an mmdet / mmseg (AttnZooBackbone) checkpoint, read by
    :func:`attnzoo.zoo.convert.load_for_model`; ``ema``: its EMA weights instead of the trained ones.

    Raises ``ValueError`` for an unknown model or a checkpoint that does not fit it,
    ``FileExistsError`` when ``folder`` exists and ``overwrite`` is false, and another ``OSError``
    when no folder can be written there (a file, the current folder, a parent without permission):
    all before any work.
    """
    require_model(model_name)
    checkpoint, folder = Path(checkpoint), check_target(folder, folder=True)
    if folder.exists() and not overwrite:
        raise FileExistsError(f"{folder} exists; pass overwrite=True (--overwrite) to replace it")
    converted, notes = load_for_model(model_name, checkpoint, ema=ema)
    model = timm.create_model(model_name, num_classes=checkpoint_classes(model_name, converted))
    load_into(model, model_name, converted, checkpoint)
    sha = file_sha256(checkpoint)
    source = source_name or checkpoint.name
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        save_model_files(model, staging)
        card = model_card(model, model_name, source, sha, repo_id=repo_id, weights=weights)
        (staging / "README.md").write_text(card, encoding="utf-8")
        provenance = dict(
            model=model_name,
            tag=weights.tag if weights is not None else None,
            source=source,
            source_sha256=sha,
            attnzoo=attnzoo_version,
        )
        (staging / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
        replace_folder(folder, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ConvertedCheckpoint(folder, model_name, model.num_classes, count_params(model), sha, tuple(notes))


def push_folder(
    folder: str | os.PathLike, repo_id: str, token: str | None = None, private: bool = False
) -> str:
    """Upload a folder written by :func:`convert_checkpoint` to the Hub repo ``repo_id``; return its URL."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    for required in ("model.safetensors", "config.json", "README.md", PROVENANCE_FILE):
        if not (folder / required).is_file():
            raise FileNotFoundError(f"{folder} has no {required}; make it with `attnzoo convert` first")
    api = HfApi(token=token)
    repo = api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(repo_id=repo.repo_id, folder_path=str(folder), commit_message="Add attnzoo weights")
    return str(repo)

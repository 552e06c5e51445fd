"""The model card (README.md) of a converted Hub folder.

timm's ``generate_readme`` writes the front matter, details, usage and citation sections; this module
fills them from the family record and, for official weights, the release manifest entry: paper,
licence, citation, the official numbers, where the file came from (with its SHA-256) and how to use the
weights from timm, mmdet / mmseg and transformers.
"""

from __future__ import annotations

import torch

from attnzoo._timm import generate_readme
from attnzoo.backbones import family_of
from attnzoo.weights import Weights
from attnzoo.zoo.facts import count_params

__all__ = ["model_card"]


def _usage(model_name: str, repo_id: str) -> str:
    return f"""
`import attnzoo` registers the architecture with timm; do it before loading.

### timm
```python
import attnzoo, timm

model = timm.create_model("hf-hub:{repo_id}", pretrained=True).eval()
features = timm.create_model("hf-hub:{repo_id}", pretrained=True, features_only=True)
```

### mmdetection / mmsegmentation
```python
custom_imports = dict(imports=["attnzoo.mm"], allow_failed_imports=False)
model = dict(
    backbone=dict(
        type="AttnZooBackbone",
        model_name="{model_name}",
        pretrained=True,  # or the path of this repo's model.safetensors
    ),
)
```

### transformers
```python
import attnzoo  # first: transformers builds the model with timm.create_model, which needs it registered
from transformers import AutoImageProcessor, AutoModelForImageClassification, TimmBackbone

processor = AutoImageProcessor.from_pretrained("{repo_id}")
model = AutoModelForImageClassification.from_pretrained("{repo_id}").eval()
logits = model(**processor(image)).logits  # image: a PIL image
backbone = TimmBackbone.from_pretrained("hf-hub:{repo_id}", out_indices=(-1,))  # timm's feature indices
```
"""


def model_card(
    model: torch.nn.Module,
    model_name: str,
    source: str,
    source_sha256: str,
    repo_id: str = "<this repo>",
    weights: Weights | None = None,
) -> str:
    """README.md text of a folder holding ``model``'s weights, converted from the file ``source``.

    ``weights``: the release-manifest record when the source is the official release (its numbers go
    in the card); ``None`` for any other file (a user's fine-tune, or an official file converted by
    hand: the card then quotes no official numbers).
    """
    family = family_of(model_name)
    cfg = model.pretrained_cfg
    size = cfg["input_size"][-1]
    details: dict = {
        "Model Type": "Image classification / feature backbone",
        "Model Stats": {
            "Params (M)": f"{count_params(model) / 1e6:.1f}",
            "Image size": "x".join(str(side) for side in cfg["input_size"][1:]),
        },
        "Papers": {family.paper: family.paper_ids},
        "Original": family.repo,
        "Converted from": f"{source} (sha256 {source_sha256})",
    }
    if weights is not None:
        details["Dataset"] = "ImageNet-1k"
        details["Official release"] = ", ".join(s.describe() for s in weights.sources)
        notes = [n for n in (weights.summary(size),) if n] + list(weights.notes)
    else:
        notes = ["converted from a file given to `attnzoo convert`; not matched to an official release"]
    if notes:
        details["Notes"] = notes
    card = {
        "license": family.license if family.license != "unknown" else "other",
        "tags": ["image-classification", "timm", "attnzoo", family.name],
        "description": f"`{model_name}` ({family.paper}) in attnzoo's key layout, converted from {source}.",
        "details": details,
        "usage": _usage(model_name, repo_id),
    }
    if family.citation:
        card["citation"] = family.citation
    return generate_readme(card, model_name)

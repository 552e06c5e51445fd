"""Malformed checkpoints and unreachable weights, over the whole registry: one clear error each.

Every family's smallest model is given its own state dict with a key missing, an extra key and a
tensor of the wrong shape; every released tag is asked for offline with nothing cached. A family or
tag that lands later is covered without new test code.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import timm
import torch

from attnzoo.backbones import FAMILIES
from attnzoo.weights import PretrainedUnavailableError
from attnzoo.weights.fetch import candidate_sources
from attnzoo.zoo.convert import load_into
from attnzoo.zoo.facts import smallest_variant_per_family

RELEASED = [(f, w) for f in FAMILIES.values() for w in f.weights if w.released]


@pytest.fixture(scope="module", params=smallest_variant_per_family())
def model_and_state(request):
    torch.manual_seed(0)
    model = timm.create_model(request.param)
    return request.param, model, model.state_dict()


def _first_param(model: torch.nn.Module) -> str:
    return next(name for name, p in model.named_parameters() if p.ndim >= 2)


@pytest.mark.parametrize("damage", ["missing", "extra", "wrong_shape"])
def test_a_checkpoint_that_does_not_fit_names_the_key(model_and_state, damage: str) -> None:
    name, model, own = model_and_state
    sd = dict(own)
    key = _first_param(model)
    if damage == "missing":
        del sd[key]
    elif damage == "extra":
        key = "not_in_the_model.weight"
        sd[key] = torch.zeros(3)
    else:
        sd[key] = torch.zeros(*sd[key].shape[:-1], sd[key].shape[-1] + 1)
    with pytest.raises(ValueError, match="does not fit") as info:
        load_into(model, name, sd, "ckpt.pth")
    assert key in str(info.value) and "ckpt.pth" in str(info.value)
    assert all(torch.equal(v, own[k]) for k, v in model.state_dict().items()), (
        "a refused load changed the model"
    )


@pytest.mark.parametrize("family, weights", RELEASED, ids=[w.name for _, w in RELEASED])
def test_offline_pretrained_fails_fast_naming_every_source(family, weights, hub_cache: Path) -> None:
    start = time.monotonic()
    with pytest.raises(PretrainedUnavailableError) as info:
        timm.create_model(weights.name, pretrained=True)
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert weights.name in message and "pretrained_cfg_overlay=dict(file=" in message
    for candidate in candidate_sources(weights, family.rehosts(weights)):
        assert candidate.source.describe() in message

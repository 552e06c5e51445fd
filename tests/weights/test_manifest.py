"""The release manifest over the whole registry: every family that lands is checked without new tests."""

from __future__ import annotations

import pytest
import timm
import torch

from attnzoo.backbones import FAMILIES
from attnzoo.weights.fetch import url_cache_path
from attnzoo.weights.manifest import REDISTRIBUTABLE_LICENSES, hub_repo_id
from attnzoo.zoo.facts import smallest_variant_per_family

RECORDS = [(family, w) for family in FAMILIES.values() for w in family.weights]


def test_tags_and_cache_files_are_unique() -> None:
    names = [w.name for _, w in RECORDS]
    assert len(names) == len(set(names))
    paths = [url_cache_path(w, s) for _, w in RECORDS for s in w.sources if s.url]
    assert len(paths) == len(set(paths)), "two URL sources would share one cached file"


@pytest.mark.parametrize("family, weights", RECORDS, ids=[w.name for _, w in RECORDS])
def test_pretrained_cfg_follows_the_record(family, weights) -> None:
    cfg = timm.models.get_pretrained_cfg(weights.name)
    assert cfg is not None and cfg.tag == weights.tag
    if family.rehosts(weights):
        assert family.license in REDISTRIBUTABLE_LICENSES and weights.official_hub is None
        assert cfg.hf_hub_id == hub_repo_id(weights.model, weights.tag)
    elif weights.official_hub is not None:
        assert cfg.hf_hub_id == weights.official_hub.hf_hub_id
    else:
        assert not cfg.hf_hub_id, "weights attnzoo may not re-host must not point at an attnzoo repo"
    assert cfg.url == (weights.official_url.url if weights.official_url else "")
    if weights.top1 is not None:
        assert str(weights.top1) in cfg.notes[0]


@pytest.mark.parametrize("name", smallest_variant_per_family())
def test_converter_passes_attnzoos_own_keys_through(name: str) -> None:
    """attnzoo's Hub copies hold attnzoo's keys and load through the family converter unchanged."""
    family = next(f for f in FAMILIES.values() if name in f.models())
    model = timm.create_model(name)
    own = model.state_dict()
    out = family.converter(dict(own), model)
    assert out.keys() == own.keys()
    assert all(torch.equal(out[k], v) for k, v in own.items())

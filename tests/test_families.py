"""The family records and the naming rule, checked over every registered family."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import timm

import attnzoo
from attnzoo.backbones import FAMILIES, UnknownModelError, family_of
from attnzoo.zoo import GOLDEN_MODELS, convert_official, list_families, list_models, require_model
from tests.helpers.parity import DATA

RECORDS = list(FAMILIES.values())


@pytest.fixture(scope="module")
def timm_own_models() -> set[str]:
    """The names timm registers without attnzoo (a fresh interpreter: attnzoo would shadow nothing)."""
    code = "import json, timm; print(json.dumps(timm.list_models()))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return set(json.loads(out))


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.name)
def test_record_is_complete(record):
    assert record.models(), f"{record.name}: no @register_model entry points in {record.module}"
    for field in ("paper", "paper_ids", "repo", "license"):
        assert getattr(record, field), f"{record.name}: empty {field}"
    assert record.repo.startswith("https://")
    for name in record.models():
        assert family_of(name) is record
        cfg = timm.models.get_pretrained_cfg(name)
        assert (cfg.license, cfg.paper_ids, cfg.origin_url) == (record.license, record.paper_ids, record.repo)
    assert {w.model for w in record.weights} == set(record.models()), "a manifest entry per model"
    assert record.citation.lstrip().startswith("@"), f"{record.name}: no BibTeX citation"
    for golden, model in record.goldens.items():
        assert model in record.models() and (DATA / f"{golden}.json").is_file()


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.name)
def test_naming_rule(record, timm_own_models):
    """Official names; ``az_`` on every model of a family whose official names timm itself registers."""
    names = record.models()
    prefixed = [n.startswith("az_") for n in names]
    assert all(prefixed) or not any(prefixed), f"{record.name}: az_ on some models only"
    assert not set(names) & timm_own_models, "an attnzoo model replaces one of timm's"
    timm_owns_family = any(n.removeprefix("az_") in timm_own_models for n in names)
    assert all(prefixed) == timm_owns_family


def test_registry_views_agree():
    assert list_families() == list(FAMILIES)
    assert list_models() == [n for record in RECORDS for n in record.models()]
    assert GOLDEN_MODELS == {g: m for record in RECORDS for g, m in record.goldens.items()}


@pytest.mark.parametrize(
    "call",
    [
        lambda: require_model("biformer_tinyy"),
        lambda: family_of("biformer_tinyy"),
        lambda: convert_official("biformer_tinyy", {}),
        lambda: list_models("biformr"),
    ],
    ids=["require_model", "family_of", "convert_official", "list_models"],
)
def test_unknown_names_raise_one_error_with_close_matches(call):
    with pytest.raises(UnknownModelError, match="did you mean biformer") as info:
        call()
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    assert "\\'" not in str(info.value) and not str(info.value).startswith("'")
    assert attnzoo.UnknownModelError is UnknownModelError

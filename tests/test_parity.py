"""Golden parity: attnzoo models against outputs of the official implementations (float64)."""

import pytest

from attnzoo.zoo import GOLDEN_MODELS
from tests.helpers.parity import DATA, check_golden

GOLDENS = sorted(name for name in GOLDEN_MODELS if (DATA / f"{name}.json").exists())


def test_every_mapped_golden_is_shipped():
    assert GOLDENS == sorted(GOLDEN_MODELS)


@pytest.mark.parametrize("golden_name", GOLDENS)
def test_golden(golden_name):
    check_golden(golden_name)

"""Golden parity: attnzoo models against outputs of the official implementations (float64)."""

import pytest

from attnzoo.zoo import DENSE_GOLDENS, GOLDEN_MODELS
from tests.helpers.parity import DATA, check_dense_golden, check_golden

GOLDENS = sorted(name for name in GOLDEN_MODELS if (DATA / f"{name}.json").exists())


DENSE = sorted(DENSE_GOLDENS)


def test_every_mapped_golden_is_shipped():
    assert GOLDENS == sorted(GOLDEN_MODELS)
    assert all((DATA / f"{name}.json").exists() for name in DENSE)


@pytest.mark.parametrize("golden_name", GOLDENS)
def test_golden(golden_name):
    check_golden(golden_name)


@pytest.mark.parametrize("golden_name", DENSE)
def test_dense_golden(golden_name):
    check_dense_golden(golden_name)

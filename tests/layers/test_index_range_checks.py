"""The layers that route through index ops (BiFormer's region routing, Sparsifiner's key selection)
make their indices with torch.topk, so they skip the ops' index range check: one aminmax and a device
sync per layer, which on a GPU stalls the launch queue between layers. Direct calls keep the check."""

import pytest
import torch

from attnzoo.kernels import bilevel_routing, bilevel_routing_attention, topk_attention
from attnzoo.kernels.bilevel_routing import reference as bra_reference
from attnzoo.kernels.topk_attention import reference as topk_reference
from attnzoo.layers import BiLevelRoutingAttention
from attnzoo.layers.sparsifiner import SparsifinerAttention


@pytest.fixture
def no_range_checks(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the index range check ran")

    monkeypatch.setattr(bra_reference, "check_index_range", refuse)
    monkeypatch.setattr(topk_reference, "check_index_range", refuse)


def test_layers_skip_the_range_check(no_range_checks):
    torch.manual_seed(0)
    bra = BiLevelRoutingAttention(32, num_heads=2, n_win=3, topk=2)
    assert bra(torch.randn(2, 9, 9, 32)).shape == (2, 9, 9, 32)
    sparse = SparsifinerAttention(64, num_heads=2, num_tokens=17)
    assert sparse(torch.randn(2, 17, 64)).shape == (2, 17, 64)


def test_direct_calls_keep_the_range_check(no_range_checks):
    q = torch.randn(1, 2, 6, 6, 8)
    idx = bilevel_routing(torch.randn(1, 6, 6, 16), torch.randn(1, 6, 6, 16), (2, 2), 2, 16**-0.5)
    with pytest.raises(AssertionError, match="range check ran"):
        bilevel_routing_attention(q, q, q, idx, (2, 2), 8**-0.5)
    qt = torch.randn(1, 2, 5, 8)
    with pytest.raises(AssertionError, match="range check ran"):
        topk_attention(qt, qt, qt, torch.zeros(1, 2, 5, 3, dtype=torch.int64), 8**-0.5)

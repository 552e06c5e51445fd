"""torch.compile(fullgraph=True) of every family: no graph breaks, same output as eager.

``aot_eager`` runs dynamo and AOTAutograd (where graph breaks and untraceable ops show up) without
inductor's C++ compile, so it stays cheap on CPU. Forward and backward are both traced.
"""

from __future__ import annotations

import pytest
import timm
import torch

from attnzoo.zoo.facts import smallest_variant_per_family
from tests.helpers.shallow import shallow_kwargs

# The smallest model of each family, plus InfViT's pure mode (another attention graph).
MODELS = sorted({*smallest_variant_per_family(), "infvit_pure_tiny_patch16_224"})


@pytest.mark.parametrize("depth", ["shallow", pytest.param("full", marks=pytest.mark.slow)])
@pytest.mark.parametrize("name", MODELS)
def test_fullgraph_compile_matches_eager(name: str, depth: str) -> None:
    """Default tier: each model's shallow build (tests/helpers/shallow.py); slow tier: the full model."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=5, **(shallow_kwargs(name) if depth == "shallow" else {}))
    x = torch.randn(2, 3, 64, 80)
    params = [p for p in model.parameters() if p.requires_grad]  # Sparsifiner's predictors are frozen
    eager = model(x)
    eager_grads = torch.autograd.grad(eager.square().sum(), params)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    out = compiled(x)
    grads = torch.autograd.grad(out.square().sum(), params)
    torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-5)
    for g, e in zip(grads, eager_grads, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5)

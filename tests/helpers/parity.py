"""The golden rebuild procedure of docs/DESIGN.md, written once for every family's golden test."""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import numpy as np
import timm
import torch

import attnzoo
from attnzoo.backbones import family_of
from attnzoo.kernels import use_kernels
from attnzoo.zoo import DENSE_GOLDENS, GOLDEN_MODELS

DATA = Path(__file__).resolve().parent.parent / "data"
_ONE_CENTRED = {"weight", "gamma", "scale", "alpha", "beta_scale"}


def load_golden(name: str) -> dict:
    """A golden JSON shipped in tests/data (made from the official model; see docs/DESIGN.md)."""
    return json.loads((DATA / f"{name}.json").read_text())


def golden_tensor(seed: int, key: str, shape: list[int]) -> np.ndarray:
    """The deterministic float64 value docs/DESIGN.md assigns to one official state-dict entry."""
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    shape = tuple(shape)
    leaf = key.rsplit(".", 1)[-1]
    if key.endswith("running_var"):
        return rng.uniform(0.5, 1.5, shape)
    if key.endswith("running_mean"):
        return 0.1 * rng.standard_normal(shape)
    if len(shape) == 0:
        return np.asarray(0.5 * rng.standard_normal(()))
    if len(shape) == 1:
        base = 1.0 if leaf in _ONE_CENTRED else 0.0
        return base + 0.1 * rng.standard_normal(shape)
    return rng.standard_normal(shape) / math.sqrt(float(np.prod(shape[1:])))


def official_state_dict(golden: dict) -> dict[str, torch.Tensor]:
    """The official model's state dict as the golden's maker filled it."""
    return {
        # reshape: ascontiguousarray promotes 0-d arrays (e.g. InfSA's rho_logit) to shape (1,)
        key: torch.from_numpy(np.ascontiguousarray(golden_tensor(golden["seed"], key, shape))).reshape(shape)
        for key, shape in golden["manifest"]
    }


def golden_input(golden: dict) -> torch.Tensor:
    rng = np.random.default_rng(golden["seed"] + 1000)
    return torch.from_numpy(rng.standard_normal(tuple(golden["input_shape"])))


def build_from_golden(golden_name: str, golden: dict) -> torch.nn.Module:
    """The attnzoo model for a golden (a dense golden: the model's dense form), loaded with the
    converted official weights, float64, eval."""
    if golden_name in DENSE_GOLDENS:
        model_name, form = DENSE_GOLDENS[golden_name]
        kwargs = dict(family_of(model_name).dense.forms[form])
    else:
        model_name, kwargs = GOLDEN_MODELS[golden_name], golden.get("kwargs", {})
    # float64 *before* loading: loading into a float32 model would round the weights (~1e-7 error).
    model = timm.create_model(model_name, pretrained=False, **kwargs).double()
    converted = attnzoo.convert_official(model_name, official_state_dict(golden), model)
    result = model.load_state_dict(converted, strict=True)
    assert not result.unexpected_keys, f"unexpected keys: {result.unexpected_keys}"
    params = {name for name, _ in model.named_parameters()}
    missing = sorted(set(result.missing_keys) & params)
    assert not missing, f"missing parameters: {missing}"
    return model.eval()


def check_golden(golden_name: str) -> float:
    """Run one golden on the reference kernels; return the max abs error (asserts the bound)."""
    golden = load_golden(golden_name)
    model = build_from_golden(golden_name, golden)
    with torch.no_grad(), use_kernels("torch"):
        out = model(golden_input(golden))
    want = torch.tensor(golden["output"], dtype=torch.float64).reshape(golden["output_shape"])
    assert tuple(out.shape) == tuple(want.shape)
    err = (out - want).abs().max().item()
    bound = 1e-9 * (1 + want.abs().max().item())
    assert err <= bound, f"{golden_name}: max |diff| {err:.3e} > {bound:.3e}"
    return err


def check_dense_golden(golden_name: str) -> float:
    """Run one dense-backbone golden (four feature maps) on the reference kernels; return the max abs
    error over the maps (asserts the bound on each)."""
    golden = load_golden(golden_name)
    model = build_from_golden(golden_name, golden)
    with torch.no_grad(), use_kernels("torch"):
        feats = model.forward_intermediates(golden_input(golden), intermediates_only=True)
    assert len(feats) == len(golden["outputs"])
    errs = []
    for i, (feat, flat, shape) in enumerate(
        zip(feats, golden["outputs"], golden["output_shapes"], strict=True)
    ):
        want = torch.tensor(flat, dtype=torch.float64).reshape(shape)
        assert tuple(feat.shape) == tuple(want.shape), f"{golden_name} map {i}: {tuple(feat.shape)}"
        errs.append((feat - want).abs().max().item())
        bound = 1e-9 * (1 + want.abs().max().item())
        assert errs[-1] <= bound, f"{golden_name} map {i}: max |diff| {errs[-1]:.3e} > {bound:.3e}"
    return max(errs)

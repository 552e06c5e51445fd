"""Bad-input battery, run over every model attnzoo registers (new families get it for free): each input
gets a correct result or one clear error, never a crash deep inside a layer or a silent wrong answer.

The cases and what every model answers:

- an empty batch: empty outputs of the right shape from ``forward``, ``forward_features``,
  ``forward_intermediates``, ``features_only`` and the mm adapter, under both kernel backends (the
  Triton ops launch no kernel), and zero gradients;
- a wrong rank (one image without its batch axis, a 5-d clip) or channel count: a ValueError naming it;
- tiny (down to 1x1) and extreme-aspect (1:16) images: a finite result of the right shape, maps of
  ``ceil(size / stride)`` (every family pads to its windows / patches, so there is no minimum size);
- NaN pixels: NaN in that image's output, the other images untouched, no exception;
- strided, sliced, batch-broadcast and channels_last inputs: the contiguous input's result;
- float64 models take float64 images; a float32 model refuses float64 / float16 / bfloat16 images with
  an error naming the dtypes (as timm's own models do), never a silent cast.

Models and tiers follow the timm battery (tests/test_timm_battery.py): one model per family and form by
default, every model under ``pytest -m slow``. Each model is built once for all its cases.
"""

from __future__ import annotations

import contextlib
import copy
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import torch

from attnzoo.kernels.dispatch import triton_available, use_kernels
from attnzoo.mm import AttnZooBackbone
from attnzoo.zoo.facts import smallest_variant_per_family
from tests.test_timm_battery import COSTLY, SMALL, image, make

NUM_CLASSES = 5
TINY_SIZES = [(1, 1), (7, 7), (16, 16), (1, 37)]
ASPECT_SIZES = [(32, 512), (512, 32)]
BACKENDS = [
    "torch",
    pytest.param("triton", marks=pytest.mark.skipif(not triton_available(), reason="no triton")),
]


@dataclass
class Built:
    """A model built once for every case, with its result on a clean batch of two images."""

    model: torch.nn.Module
    x: torch.Tensor
    out: torch.Tensor


@pytest.fixture(scope="module", params=COSTLY)
def name(request) -> str:
    """The model under test: pytest runs every case of one model before building the next."""
    return request.param


@pytest.fixture(scope="module")
def built(name) -> Built:
    model = make(name, num_classes=NUM_CLASSES).eval()
    x = image()
    with torch.no_grad():
        return Built(model, x, model(x))


@pytest.fixture(scope="module")
def features(name) -> torch.nn.Module:
    """The model's ``features_only`` form."""
    return make(name, features_only=True).eval()


@pytest.fixture
def no_kernel_launches(monkeypatch):
    """Any Triton launch from an attnzoo op fails the test (every launch goes through ``wrap_triton``)."""

    def refuse(kernel):
        raise AssertionError(f"{kernel} launched for an empty problem")

    for module_name, module in list(sys.modules.items()):
        if module_name.startswith("attnzoo.kernels.") and hasattr(module, "wrap_triton"):
            monkeypatch.setattr(module, "wrap_triton", refuse)


@contextlib.contextmanager
def kernels(backend: str) -> Iterator[None]:
    """``use_kernels(backend)``; where a forced Triton op refuses the model's shapes (HaloNet-H5 to H7's
    value heads are wider than the halo kernel takes) the case is skipped: under ``auto`` those run
    the reference, which the ``torch`` case covers."""
    try:
        with use_kernels(backend):
            yield
    except RuntimeError as err:
        if "forced for a shape or dtype the kernel does not support" not in str(err):
            raise
        pytest.skip(f"the Triton kernel does not take this model's shapes: {err}")


def empty() -> torch.Tensor:
    """A batch of no images."""
    return torch.empty(0, 3, SMALL, SMALL)


def map_size(h: int, w: int, reduction: int) -> tuple[int, int]:
    """A feature map's size: ``ceil(size / stride)``, as every family pads to whole windows / patches."""
    return math.ceil(h / reduction), math.ceil(w / reduction)


# ----------------------------------------------------------------------------- empty batches
@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_batch_gives_empty_outputs(built, backend, no_kernel_launches):
    model, one = built.model, built.x[:1]
    with torch.no_grad():
        want_features = model.forward_features(one).shape[1:]
        want_maps = [t.shape[1:] for t in model.forward_intermediates(one, intermediates_only=True)]
        with kernels(backend):
            assert model(empty()).shape == (0, NUM_CLASSES)
            assert model.forward_features(empty()).shape == (0, *want_features)
            final, maps = model.forward_intermediates(empty())
    assert final.shape == (0, *want_features)
    assert [t.shape for t in maps] == [(0, *s) for s in want_maps]


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_batch_trains_with_zero_gradients(built, backend, no_kernel_launches):
    model = copy.deepcopy(built.model).train()
    with kernels(backend):
        model(empty()).sum().backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert grads, "no parameter took part in the forward"
    assert not [n for n, g in grads.items() if g.any()], "an empty batch moved a parameter"
    stats = {n: b for n, b in model.named_buffers() if b.is_floating_point()}
    assert not [n for n, b in stats.items() if not torch.isfinite(b).all()], "NaN statistics of no images"


def test_features_only_empty_batch(features):
    with torch.no_grad():
        maps = features(empty())
    info = features.feature_info
    for t, ch, red in zip(maps, info.channels(), info.reduction(), strict=True):
        assert t.shape == (0, ch, *map_size(SMALL, SMALL, red))


@pytest.mark.parametrize("model_name", sorted(smallest_variant_per_family()))
def test_mm_adapter_empty_batch(model_name):
    backbone = AttnZooBackbone(model_name, drop_path_rate=0.0).eval()
    with torch.no_grad():
        maps = backbone(empty())
    assert isinstance(maps, tuple) and len(maps) == len(backbone.out_channels)
    for t, ch, red in zip(maps, backbone.out_channels, backbone.strides, strict=True):
        assert t.shape == (0, ch, *map_size(SMALL, SMALL, red))


# ----------------------------------------------------------------------------- wrong rank / channels
WRONG_INPUTS = {
    "one image without batch axis": ((3, SMALL, SMALL), "got a 3-d tensor"),
    "5-d clip": ((1, 2, 3, SMALL, SMALL), "got a 5-d tensor"),
    "2-d": ((SMALL, SMALL), "got a 2-d tensor"),
    "4 channels": ((1, 4, SMALL, SMALL), "got 4 channels"),
    "1 channel": ((1, 1, SMALL, SMALL), "got 1 channels"),
}


@pytest.mark.parametrize("call", ["forward", "forward_intermediates", "features_only"])
@pytest.mark.parametrize("case", WRONG_INPUTS)
def test_wrong_rank_or_channels_is_one_clear_error(built, features, case, call):
    shape, words = WRONG_INPUTS[case]
    runs = {
        "forward": built.model,
        "forward_intermediates": built.model.forward_intermediates,
        "features_only": features,
    }
    with pytest.raises(ValueError, match=rf"expects .*\(B, 3, H, W\).*{words}"):
        runs[call](torch.randn(shape))


# ----------------------------------------------------------------------------- sizes
def _assert_maps(features: torch.nn.Module, h: int, w: int) -> None:
    """``features``' maps of one ``h x w`` image: finite and ``ceil(size / stride)`` at each stride."""
    with torch.no_grad():
        maps = features(image(h, w, batch=1))
    for t, red in zip(maps, features.feature_info.reduction(), strict=True):
        assert t.shape[-2:] == map_size(h, w, red), f"stride {red}: {tuple(t.shape)}"
        assert torch.isfinite(t).all()


@pytest.mark.parametrize("size", TINY_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_tiny_images(built, features, size):
    """Every family pads to its windows / patches: any size down to 1x1 gives a finite result."""
    with torch.no_grad():
        out = built.model(image(*size, batch=1))
    assert out.shape == (1, NUM_CLASSES) and torch.isfinite(out).all()
    _assert_maps(features, *size)


@pytest.mark.parametrize("size", ASPECT_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_extreme_aspect_images(features, size):
    """1:16 images through the trunk (the head only pools). OverLoCK's ContMix resizes a map whose
    short side is under its window up to it, keeping the aspect ratio: these cost it ~10x a square
    image of as many pixels."""
    _assert_maps(features, *size)


# ----------------------------------------------------------------------------- values and layouts
def test_nan_pixels_propagate_to_their_image_only(built):
    x = built.x.clone()
    x[0, :, 3, 5] = float("nan")
    with torch.no_grad():
        out = built.model(x)
    assert torch.isnan(out[0]).any(), "a NaN pixel vanished"
    torch.testing.assert_close(out[1], built.out[1], msg="a NaN in one image changed another")


def _layouts(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """``x``'s values in other memory layouts (none of them contiguous)."""
    wide = torch.zeros(*x.shape[:-1], x.shape[-1] + 16)
    wide[..., 8:-8] = x
    return {
        "transposed": x.transpose(-1, -2).contiguous().transpose(-1, -2),
        "sliced": wide[..., 8:-8],
        "channels_last": x.contiguous(memory_format=torch.channels_last),
        "every other row": torch.repeat_interleave(x, 2, dim=-2)[..., ::2, :],
    }


@pytest.mark.parametrize("layout", ["transposed", "sliced", "channels_last", "every other row"])
def test_non_contiguous_inputs_give_the_contiguous_result(built, layout):
    x = _layouts(built.x)[layout]
    assert not x.is_contiguous()
    with torch.no_grad():
        torch.testing.assert_close(built.model(x), built.out)


def test_batch_broadcast_input(built):
    """A batch made by ``expand`` (stride 0 on the batch axis) equals the image repeated."""
    x = built.x[:1].expand(2, -1, -1, -1)
    with torch.no_grad():
        out = built.model(x)
    torch.testing.assert_close(out, built.out[:1].expand(2, -1))


def test_float64_model_takes_float64_images(built):
    """The float32 model's result, within 2% over the whole output (not per logit: a model that picks
    keys by top-k, Sparsifiner, may pick another on a near tie in float64 and move a few logits ~1e-2)."""
    model = copy.deepcopy(built.model).double()
    with torch.no_grad():
        out = model(built.x.double())
    assert out.dtype == torch.float64 and torch.isfinite(out).all()
    assert (out.float() - built.out).norm() <= 2e-2 * built.out.norm()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16], ids=str)
def test_float32_model_refuses_other_input_dtypes(built, dtype):
    """timm's own models (resnet18) raise ``expected scalar type Double but found Float``: the same, or
    another error naming the dtypes, never a silent cast."""
    with pytest.raises((RuntimeError, ValueError), match=r"(?i)(type|dtype).*(double|half|bfloat16|float)"):
        built.model(built.x.to(dtype))

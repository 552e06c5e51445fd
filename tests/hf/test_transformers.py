"""attnzoo from Hugging Face transformers (the `hf` extra): Hub folders written by `attnzoo convert` load as
TimmWrapper models and image processors, and attnzoo models serve as TimmBackbone in transformers'
detectors and segmenters."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from transformers import (
    AutoImageProcessor,
    AutoModelForImageClassification,
    DetrConfig,
    DetrForObjectDetection,
    TimmBackbone,
    TimmBackboneConfig,
    UperNetConfig,
    UperNetForSemanticSegmentation,
)

from attnzoo.zoo.publish import convert_checkpoint, save_model_files
from tests.helpers.shallow import shallow_kwargs
from tests.zoo.test_publish import into_hub_cache, official_checkpoint

# Three kinds: hierarchical with routed attention, a plain ViT (per-block features), conv + dynamic
# kernels with BatchNorm; shallow builds (their depths travel in config.json's model_args).
MODELS = ("biformer_tiny", "inline_deit_tiny", "overlock_xt")
CLASSES = 7


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[torch.nn.Module, Path]]:
    """Each model's shallow build (seeded, CLASSES classes) and the Hub folder it was saved to."""
    built = {}
    for name in MODELS:
        torch.manual_seed(0)
        model = timm.create_model(name, num_classes=CLASSES, **shallow_kwargs(name)).eval()
        folder = tmp_path_factory.mktemp(name)
        save_model_files(model, folder)
        built[name] = model, folder
    return built


def _image() -> Image.Image:
    """An RGB image of an odd size, so resizing and cropping both act."""
    pixels = np.random.default_rng(0).integers(0, 256, (301, 263, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def assert_same_logits(folder: Path, reference: torch.nn.Module, x: torch.Tensor) -> float:
    """transformers' model of ``folder`` holds ``reference``'s weights bit for bit and gives its logits."""
    hf = AutoModelForImageClassification.from_pretrained(folder).eval()
    assert type(hf).__name__ == "TimmWrapperForImageClassification"
    assert hf.config.num_labels == reference.num_classes
    own, theirs = reference.state_dict(), hf.timm_model.state_dict()
    assert own.keys() == theirs.keys()
    for key, value in own.items():
        torch.testing.assert_close(theirs[key], value, rtol=0, atol=0, msg=key)
    with torch.no_grad():
        expected, got = reference(x), hf(pixel_values=x).logits
    # Not bit for bit: transformers keeps the weights in the memory-mapped safetensors file, whose
    # unaligned tensors take other CPU GEMM paths (the same weights copied out give identical logits).
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    return (got - expected).abs().max().item()


def assert_same_preprocessing(folder: Path) -> None:
    """AutoImageProcessor of ``folder`` uses timm's data config of the model timm loads from it."""
    processor = AutoImageProcessor.from_pretrained(folder)
    model = timm.create_model(f"local-dir:{folder}", pretrained=True)
    data_config = timm.data.resolve_model_data_config(model)
    as_tuples = {k: tuple(v) if isinstance(v, list) else v for k, v in data_config.items()}  # JSON lists
    assert processor.data_config == as_tuples
    image = _image()
    expected = timm.data.create_transform(**data_config, is_training=False)(image)
    torch.testing.assert_close(processor(image)["pixel_values"], expected[None], rtol=0, atol=0)


def test_folder_config_has_no_duplicated_num_classes(folders) -> None:
    for name, (_, folder) in folders.items():
        config = json.loads((folder / "config.json").read_text())
        assert config["architecture"] == name and config["num_classes"] == CLASSES
        assert "num_classes" not in config["model_args"]
        assert json.loads(json.dumps(shallow_kwargs(name))).items() <= config["model_args"].items()


@pytest.mark.parametrize("name", MODELS)
def test_folder_loads_in_transformers_and_back_in_timm(name, folders, tmp_path) -> None:
    model, folder = folders[name]
    x = torch.randn(1, 3, 224, 224)
    diff = assert_same_logits(folder, model, x)
    print(f"{name}: max |logits transformers - timm| = {diff:.3g}")
    assert_same_preprocessing(folder)

    # timm and attnzoo read the folder as before: the head size comes from the root num_classes
    by_timm = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    assert by_timm.num_classes == CLASSES
    torch.testing.assert_close(by_timm(x), model(x), rtol=0, atol=0)

    # what transformers' save_pretrained writes (after fine-tuning there) is a folder timm loads
    hf = AutoModelForImageClassification.from_pretrained(folder)
    hf.save_pretrained(tmp_path / "saved")
    again = timm.create_model(f"local-dir:{tmp_path / 'saved'}", pretrained=True).eval()
    torch.testing.assert_close(again(x), model(x), rtol=0, atol=0)


def test_converted_official_checkpoint_loads_in_transformers(tmp_path: Path, hub_cache: Path) -> None:
    """The `attnzoo convert` path end to end, on a full model (ConViT-Ti, from its parity golden), and
    the model card's transformers snippet run as written against the folder in a Hub cache."""
    repo_id = "attnzoo-test/convit_tiny.fb_in1k"
    done = convert_checkpoint(
        "az_convit_tiny", official_checkpoint(tmp_path), tmp_path / "out", repo_id=repo_id
    )
    assert "num_classes" not in json.loads((done.folder / "config.json").read_text()).get("model_args", {})
    reference = timm.create_model(f"local-dir:{done.folder}", pretrained=True).eval()
    diff = assert_same_logits(done.folder, reference, torch.randn(1, 3, 224, 224))
    print(f"az_convit_tiny: max |logits transformers - timm| = {diff:.3g}")
    assert_same_preprocessing(done.folder)

    card = (done.folder / "README.md").read_text()
    snippet = card.split("### transformers\n```python\n", 1)[1].split("```", 1)[0]
    into_hub_cache(hub_cache, repo_id, done.folder)
    image = _image()
    names = {"image": image}
    exec(snippet, names)
    pixels = timm.data.create_transform(**timm.data.resolve_model_data_config(reference))(image)[None]
    with torch.no_grad():
        torch.testing.assert_close(names["logits"], reference(pixels), rtol=1e-5, atol=1e-5)
        expected = reference.forward_intermediates(pixels, indices=(11,), intermediates_only=True)
        torch.testing.assert_close(names["backbone"](pixels).feature_maps[0], expected[0], rtol=0, atol=0)


def test_folder_of_the_old_layout(folders, tmp_path: Path) -> None:
    """Folders written before model_args lost num_classes: timm loads them, transformers with model_args."""
    model, folder = folders["biformer_tiny"]
    old = tmp_path / "old"
    shutil.copytree(folder, old)
    config = json.loads((old / "config.json").read_text())
    config["model_args"]["num_classes"] = config["num_classes"]
    (old / "config.json").write_text(json.dumps(config))

    assert timm.create_model(f"local-dir:{old}", pretrained=True).num_classes == CLASSES
    with pytest.raises(TypeError, match="multiple values for keyword argument 'num_classes'"):
        AutoModelForImageClassification.from_pretrained(old)
    args = {k: v for k, v in config["model_args"].items() if k != "num_classes"}
    hf = AutoModelForImageClassification.from_pretrained(old, model_args=args).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(hf(pixel_values=x).logits, model(x), rtol=1e-5, atol=1e-6)


def _run(code: str) -> None:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_building_needs_import_attnzoo_first(folders) -> None:
    """transformers cannot import attnzoo by itself: without `import attnzoo` timm's 'Unknown model'
    becomes transformers' ImportError; the image processor (timm's data config only) needs no attnzoo."""
    _, folder = folders["biformer_tiny"]
    _run(f"""
from transformers import AutoImageProcessor, AutoModelForImageClassification
assert AutoImageProcessor.from_pretrained({str(folder)!r}).data_config["input_size"] == (3, 224, 224)
try:
    AutoModelForImageClassification.from_pretrained({str(folder)!r})
except ImportError as e:
    assert "biformer_tiny" in str(e), e
else:
    raise AssertionError("built without attnzoo")
""")


@pytest.mark.parametrize(("name", "indices"), [("biformer_tiny", (0, 1, 2, 3)), ("inline_deit_tiny", (0, 1))])
def test_timm_backbone_gives_timm_features(name, indices, folders) -> None:
    x = torch.randn(2, 3, 96, 128)  # not square, not the training size
    # built from its config (what a detector does), against timm's features_only with the same weights
    backbone = TimmBackbone(TimmBackboneConfig(backbone=name, out_indices=indices), **shallow_kwargs(name))
    backbone.eval()
    features = timm.create_model(name, features_only=True, out_indices=indices, **shallow_kwargs(name))
    features.load_state_dict(backbone._backbone.state_dict())
    features.eval()
    with torch.no_grad():
        got, expected = backbone(x).feature_maps, features(x)
    assert backbone.out_indices == list(indices) and len(got) == len(indices)
    assert backbone.channels == features.feature_info.channels()
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)

    # from an attnzoo Hub folder (local-dir: here, hf-hub:<repo> online): the folder's weights
    model, folder = folders[name]
    pretrained = TimmBackbone.from_pretrained(f"local-dir:{folder}", out_indices=indices).eval()
    with torch.no_grad():
        got = pretrained(x).feature_maps
        expected = model.forward_intermediates(x, indices=indices, intermediates_only=True)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def _boxes() -> list[dict[str, torch.Tensor]]:
    return [
        dict(class_labels=torch.tensor([1]), boxes=torch.tensor([[0.5, 0.5, 0.2, 0.3]])),
        dict(
            class_labels=torch.tensor([0, 2]),
            boxes=torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.7, 0.3, 0.2]]),
        ),
    ]


def assert_trains(model: torch.nn.Module, backbone: torch.nn.Module, **inputs) -> float:
    """One forward + backward: a finite loss and a nonzero gradient for every backbone parameter."""
    start = time.perf_counter()
    loss = model.train()(**inputs).loss
    loss.backward()
    assert torch.isfinite(loss)
    params = dict(backbone.named_parameters())
    assert params and all(p.requires_grad for p in params.values())
    no_grad = [n for n, p in params.items() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not no_grad, f"backbone parameters without a gradient: {no_grad}"
    return time.perf_counter() - start


def test_detr_with_an_attnzoo_backbone_trains() -> None:
    # attnzoo weights go in by hand: transformers 5 ignores use_pretrained_backbone
    name, indices = "biformer_tiny", (3,)  # DETR's default out_indices [1, 2, 3, 4] is ResNet's (stem first)
    torch.manual_seed(0)
    config = DetrConfig(
        backbone_config=TimmBackboneConfig(backbone=name, out_indices=indices),
        num_queries=5,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_labels=3,
    )
    detr = DetrForObjectDetection(config)
    backbone = detr.model.backbone.model
    weights = timm.create_model(name, features_only=True, out_indices=indices).state_dict()
    backbone.load_state_dict(weights)
    for key, value in backbone.state_dict().items():
        torch.testing.assert_close(value, weights[key], rtol=0, atol=0, msg=key)
    seconds = assert_trains(detr, backbone, pixel_values=torch.randn(2, 3, 96, 128), labels=_boxes())
    print(f"DETR + {name} at 96x128, batch 2: forward + backward {seconds:.2f} s")


def test_upernet_with_an_attnzoo_backbone_trains() -> None:
    torch.manual_seed(0)
    config = UperNetConfig(
        backbone_config=TimmBackboneConfig(backbone="overlock_xt", out_indices=(0, 1, 2, 3)),
        hidden_size=32,
        auxiliary_channels=16,
        num_labels=4,
    )
    seg = UperNetForSemanticSegmentation(config)
    labels = torch.randint(0, 4, (2, 64, 96))
    seconds = assert_trains(seg, seg.backbone, pixel_values=torch.randn(2, 3, 64, 96), labels=labels)
    print(f"UperNet + overlock_xt at 64x96, batch 2: forward + backward {seconds:.2f} s")

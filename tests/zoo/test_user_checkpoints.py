"""``attnzoo convert`` on checkpoints users trained: timm ``train.py`` (CheckpointSaver), mmdet / mmseg
around ``AttnZooBackbone`` (mmengine's checkpoint format, with and without its EMA hook), and files that
are no checkpoint at all. Every file is written by the test with the tool that writes it in practice."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import mmengine
import pytest
import safetensors.torch
import timm
import torch
from mmdet.registry import MODELS as DET_MODELS
from mmengine.config import Config
from mmengine.hooks import EMAHook
from mmengine.logging import MessageHub
from mmengine.model import ExponentialMovingAverage
from mmengine.optim import OptimWrapper
from mmengine.registry import DefaultScope
from mmengine.runner.checkpoint import save_checkpoint, weights_to_cpu
from timm.utils import CheckpointSaver, ModelEmaV3

import attnzoo.mm  # noqa: F401  (registers AttnZooBackbone with mmdet)
from attnzoo.cli import main
from attnzoo.zoo import load_for_model
from attnzoo.zoo.publish import convert_checkpoint
from tests.helpers.mm_models import narrow_mask_rcnn

ROOT = Path(__file__).resolve().parents[2]
TIMM_MODEL = "az_convit_tiny"


def _jitter(model: torch.nn.Module, seed: int) -> None:
    """Move every float tensor off its initial value, so a checkpoint's weights are recognisable."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.add_(0.01 * torch.randn(value.shape, generator=gen))


def _read_folder(folder: Path) -> tuple[dict[str, torch.Tensor], dict]:
    config = json.loads((folder / "config.json").read_text())
    return safetensors.torch.load_file(str(folder / "model.safetensors")), config


def _assert_same(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert got.keys() == want.keys(), sorted(got.keys() ^ want.keys())[:5]
    for key, value in want.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=0, msg=key)


# --------------------------------------------------------------------------- timm train.py
def _timm_train_checkpoint(folder: Path, ema: bool, num_classes: int = 10) -> tuple[Path, dict, dict]:
    """What timm's train.py leaves: CheckpointSaver's last.pth.tar with args, optimizer and EMA."""
    torch.manual_seed(0)
    model = timm.create_model(TIMM_MODEL, num_classes=num_classes)
    model_ema = ModelEmaV3(model, decay=0.5) if ema else None
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    _jitter(model, seed=1)  # "training": the live weights move, the EMA follows half-way
    if model_ema is not None:
        model_ema.update(model)
    args = argparse.Namespace(model=TIMM_MODEL, num_classes=num_classes, lr=0.1, epochs=1)
    folder.mkdir()
    saver = CheckpointSaver(model, optimizer, args=args, model_ema=model_ema, checkpoint_dir=str(folder))
    saver.save_checkpoint(epoch=0, metric=12.5)
    path = folder / "last.pth.tar"
    ema_sd = model_ema.module.state_dict() if model_ema is not None else {}
    return path, model.state_dict(), ema_sd


def test_timm_train_checkpoint_converts_with_its_classes_and_ema_on_request(tmp_path, capsys):
    path, trained, averaged = _timm_train_checkpoint(tmp_path / "run", ema=True)
    raw = torch.load(path, map_location="cpu", weights_only=False)  # the layout this test relies on
    assert {"epoch", "arch", "state_dict", "state_dict_ema", "optimizer", "args", "metric"} <= raw.keys()
    assert isinstance(raw["args"], argparse.Namespace)

    assert main(["convert", TIMM_MODEL, str(path), str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "10 classes" in out and "note: weights from 'state_dict'" in out and "--ema" in out
    weights, config = _read_folder(tmp_path / "out")
    assert config["num_classes"] == 10
    _assert_same(weights, trained)

    done = convert_checkpoint(TIMM_MODEL, path, tmp_path / "out_ema", ema=True)
    assert done.notes == ("EMA weights ('state_dict_ema')",)
    _assert_same(_read_folder(done.folder)[0], averaged)
    assert not torch.equal(averaged["head.weight"], trained["head.weight"])


def test_ema_asked_of_a_checkpoint_without_one(tmp_path, capsys):
    path, _, _ = _timm_train_checkpoint(tmp_path / "run", ema=False)
    assert main(["convert", TIMM_MODEL, str(path), str(tmp_path / "out"), "--ema"]) == 2
    err = capsys.readouterr().err
    assert f"{path} holds no EMA weights" in err and "leave out --ema" in err
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- mmdet / mmseg + AttnZooBackbone
def _save_mm(model: torch.nn.Module, path: Path, ema_hook: EMAHook | None = None) -> dict:
    """The checkpoint mmengine's Runner saves (meta, state_dict, message_hub with numpy-backed
    HistoryBuffers, optimizer, param_schedulers), through mmengine's own save_checkpoint."""
    hub = MessageHub.get_instance(f"attnzoo-test-{path.stem}")
    hub.update_scalar("train/loss", 1.25)
    hub.update_info("iter", 10)
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
    checkpoint = {
        "meta": dict(epoch=1, iter=10, seed=0, mmengine_version=mmengine.__version__, cfg="model = dict()"),
        "state_dict": weights_to_cpu(model.state_dict()),
        "message_hub": hub.state_dict(),
        "optimizer": optim.state_dict(),
        "param_schedulers": [],
    }
    if ema_hook is not None:
        ema_hook.before_save_checkpoint(None, checkpoint)  # what the runner calls before saving
    save_checkpoint(checkpoint, str(path))
    return checkpoint


def _tiny_mask_rcnn_mala() -> torch.nn.Module:
    """configs/det/mask-rcnn_mala_t_fpn_1x_coco.py (MALA-T's det form: LayerNorm'd stage outputs) with
    narrow neck and heads; the backbone is the real MALA-T, so the result fits `attnzoo convert mala_t`."""
    cfg = Config.fromfile(ROOT / "configs/det/mask-rcnn_mala_t_fpn_1x_coco.py").model
    cfg.backbone.update(pretrained=False, drop_path_rate=0.0)
    narrow_mask_rcnn(cfg, 16, num_classes=3)
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope("mmdet"):
        detector = DET_MODELS.build(cfg)
    _jitter(detector, seed=2)
    return detector


def test_mmdet_checkpoint_becomes_a_headless_classifier(tmp_path, capsys):
    detector = _tiny_mask_rcnn_mala()
    path = tmp_path / "epoch_1.pth"
    saved = _save_mm(detector, path)
    prefix = "backbone.model.model."
    assert any(k.startswith(prefix + "extra_norms.") for k in saved["state_dict"])  # det form
    assert any(k.startswith("roi_head.") for k in saved["state_dict"])

    assert main(["convert", "mala_t", str(path), str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "0 classes" in out
    assert "note: mala_t backbone of an mmdet / mmseg checkpoint (AttnZooBackbone)" in out
    dropped = "extra_norms.0, extra_norms.1, extra_norms.2, extra_norms.3"
    assert f"note: dropped (the dense form's own modules, not in the classifier): {dropped}" in out
    assert "kept at initialisation: norm.bn, norm.conv" in out  # MALA's conv head: features_only drops it

    weights, config = _read_folder(tmp_path / "out")
    assert config["num_classes"] == 0 and config["architecture"] == "mala_t"
    backbone = {
        k.removeprefix(prefix): v
        for k, v in saved["state_dict"].items()
        if k.startswith(prefix) and not k.startswith(prefix + "extra_norms.")
    }
    assert backbone and set(weights) - set(backbone) == {k for k in weights if k.startswith("norm.")}
    for key, value in backbone.items():
        torch.testing.assert_close(weights[key], value, rtol=0, atol=0, msg=key)
    timm.create_model("mala_t", num_classes=0).load_state_dict(weights, strict=True)


def _halonet_detector() -> torch.nn.Module:
    """A detector's backbone part: HaloNet's features_only model is timm's list wrapper, which flattens
    ``stem.conv1`` into ``stem_conv1``."""
    torch.manual_seed(0)
    detector = torch.nn.Module()
    detector.backbone = DET_MODELS.build(dict(type="AttnZooBackbone", model_name="az_halonet_h0"))
    _jitter(detector, seed=3)
    return detector


def test_mm_list_wrapper_names_and_mmengine_ema(tmp_path):
    detector = _halonet_detector()
    trained = {k: v.clone() for k, v in detector.state_dict().items()}
    assert "backbone.model.stem_conv1.conv.weight" in trained
    ema_model = ExponentialMovingAverage(detector)
    _jitter(ema_model.module, seed=4)
    hook = EMAHook()
    hook.ema_model = ema_model
    path = tmp_path / "iter_10.pth"
    _save_mm(detector, path, ema_hook=hook)

    headless = timm.create_model("az_halonet_h0", num_classes=0).state_dict()
    averaged = {k: v for k, v in ema_model.module.state_dict().items()}
    for ema, source in ((False, trained), (True, averaged)):
        weights, notes = load_for_model("az_halonet_h0", path, ema=ema)
        assert weights.keys() == headless.keys()
        assert len(notes) == 2 and "mmengine's" in notes[0]  # which entry: EMAHook swaps them
        for key, value in weights.items():
            own = next(
                k
                for k in (f"backbone.model.{key}", f"backbone.model.{key.replace('.', '_', 1)}")
                if k in source
            )
            torch.testing.assert_close(value, source[own], rtol=0, atol=0, msg=key)


# ------------------------------------------------------------------------------- not checkpoints
def _malformed(tmp_path: Path, kind: str) -> tuple[Path, str]:
    """A file ``attnzoo convert`` must refuse, and the words its error must contain."""
    if kind == "html":
        path = tmp_path / "download.pth"
        path.write_text("<!DOCTYPE html><html><body>Access denied</body></html>")
        return path, "is a text / HTML file"
    if kind == "text":
        path = tmp_path / "notes.pth"
        path.write_text("epoch 300, top-1 81.2\n")
        return path, "is not a torch checkpoint"
    if kind == "empty":
        path = tmp_path / "empty.pth"
        path.write_bytes(b"")
        return path, "is empty"
    if kind == "truncated":
        path = tmp_path / "cut.pth"
        torch.save({"model": timm.create_model("az_halonet_h0").state_dict()}, path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        return path, "is a damaged or truncated torch checkpoint"
    if kind == "list":
        path = tmp_path / "list.pth"
        torch.save([torch.zeros(3)], path)
        return path, "holds a list, not a state dict"
    if kind == "wrong_model":  # a HaloNet checkpoint given as ConViT
        path = tmp_path / "halonet.pth"
        torch.save({"model": timm.create_model("az_halonet_h0").state_dict()}, path)
        return path, f"does not fit {TIMM_MODEL}"
    raise AssertionError(kind)


# "text" starts with 'e' (pickle's APPENDS opcode), on which torch's weights-only unpickler raises IndexError.
@pytest.mark.parametrize("kind", ["html", "text", "empty", "truncated", "list", "wrong_model"])
def test_convert_refuses_what_is_no_checkpoint_for_the_model(tmp_path, capsys, kind):
    path, words = _malformed(tmp_path, kind)
    assert main(["convert", TIMM_MODEL, str(path), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("attnzoo convert: error: ") and str(path) in err and words in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()

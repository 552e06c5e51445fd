"""attnzoo convert / push: official checkpoint -> Hub folder -> timm loads it (offline, from a cache)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import timm
import torch

from attnzoo.cli import main
from attnzoo.zoo import convert_official
from attnzoo.zoo.publish import convert_checkpoint, push_folder
from attnzoo.zoo.targets import replace_folder
from tests.helpers.parity import load_golden, official_state_dict

COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


def official_checkpoint(tmp_path: Path, golden: str = "convit_tiny", classes: int | None = None) -> Path:
    """A float32 checkpoint in the official naming and wrapping ({'model': ...}), as released."""
    sd = {k: v.float() for k, v in official_state_dict(load_golden(golden)).items()}
    if classes is not None:
        sd["head.weight"], sd["head.bias"] = sd["head.weight"][:classes], sd["head.bias"][:classes]
    path = tmp_path / f"{golden}_official.pth"
    torch.save({"model": sd, "epoch": 299}, path)
    return path


def into_hub_cache(cache: Path, repo_id: str, folder: Path) -> None:
    """Place a folder where hf_hub_download would have left a download of ``repo_id``."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(folder, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)


def test_converted_folder_loads_by_file_and_from_the_hub(tmp_path: Path, hub_cache: Path) -> None:
    ckpt = official_checkpoint(tmp_path)
    done = convert_checkpoint("az_convit_tiny", ckpt, tmp_path / "out")
    assert sorted(p.name for p in done.folder.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
        "provenance.json",
    ]
    assert done.num_classes == 1000 and len(done.source_sha256) == 64

    expected = convert_official("az_convit_tiny", torch.load(ckpt, weights_only=True)["model"])
    by_file = timm.create_model(
        "az_convit_tiny",
        pretrained=True,
        pretrained_cfg_overlay=dict(file=str(done.folder / "model.safetensors")),
    )
    into_hub_cache(hub_cache, "attnzoo-test/convit_tiny.fb_in1k", done.folder)
    by_hub = timm.create_model("hf-hub:attnzoo-test/convit_tiny.fb_in1k", pretrained=True)
    assert by_hub.pretrained_cfg["architecture"] == "az_convit_tiny"
    for model in (by_file, by_hub):
        own = model.state_dict()
        for key, value in expected.items():
            torch.testing.assert_close(own[key], value, rtol=0, atol=0, msg=key)

    card = (done.folder / "README.md").read_text()
    assert "license: apache-2.0" in card
    assert done.source_sha256 in card and ckpt.name in card
    assert "ConViT: Improving Vision Transformers" in card and "not matched to an official release" in card
    assert "@article" in card or "@inproceedings" in card
    assert "Image size: 224x224" in card


def test_class_count_follows_the_checkpoint(tmp_path: Path) -> None:
    done = convert_checkpoint("az_convit_tiny", official_checkpoint(tmp_path, classes=10), tmp_path / "out")
    assert done.num_classes == 10
    assert json.loads((done.folder / "config.json").read_text())["num_classes"] == 10


def test_a_checkpoint_that_does_not_fit_leaves_the_folder_alone(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "notes.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="overwrite"):
        convert_checkpoint("az_convit_tiny", official_checkpoint(tmp_path), folder)
    with pytest.raises(ValueError, match="does not match|does not fit"):
        convert_checkpoint("az_convit_small", official_checkpoint(tmp_path), folder, overwrite=True)
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["convit_tiny_official.pth", "out"], "staging left"
    # and a good one replaces it
    convert_checkpoint("az_convit_tiny", official_checkpoint(tmp_path), folder, overwrite=True)
    assert not (folder / "notes.txt").exists() and (folder / "model.safetensors").is_file()


def _fail_first_move_onto(folder: Path, error: BaseException, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first rename onto ``folder`` (the finished folder moving into place) raises ``error``."""
    rename, failed = Path.rename, []

    def first_fails(self: Path, target) -> Path:
        if Path(target) == folder and not failed:
            failed.append(self)
            raise error
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", first_fails)


def test_a_failed_final_move_puts_the_old_folder_back(tmp_path: Path, monkeypatch) -> None:
    ckpt, folder = official_checkpoint(tmp_path), tmp_path / "out"
    folder.mkdir()
    (folder / "notes.txt").write_text("user data")
    _fail_first_move_onto(folder, OSError(18, "Invalid cross-device link"), monkeypatch)
    with pytest.raises(OSError, match="cross-device"):
        convert_checkpoint("az_convit_tiny", ckpt, folder, overwrite=True)
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    assert (folder / "notes.txt").read_text() == "user data"
    assert sorted(p.name for p in tmp_path.iterdir()) == [ckpt.name, "out"], "staging or old copy left"


def test_an_interrupt_between_the_moves_puts_the_old_folder_back(tmp_path: Path, monkeypatch) -> None:
    folder, staging = tmp_path / "out", tmp_path / ".out.staging"
    for path, text in ((folder, "old"), (staging, "new")):
        path.mkdir()
        (path / "weights").write_text(text)
    _fail_first_move_onto(folder, KeyboardInterrupt(), monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        replace_folder(folder, staging)
    assert (folder / "weights").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.staging", "out"]  # the caller removes staging
    replace_folder(folder, staging)  # and without the interrupt, the new one replaces it
    assert (folder / "weights").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_unknown_model_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown model 'no_such_net'"):
        convert_checkpoint("no_such_net", tmp_path / "x.pth", tmp_path / "out")


def test_push_uploads_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("init", token))

        def create_repo(self, repo_id, private=False, exist_ok=False):
            calls.append(("create_repo", repo_id, private, exist_ok))

            class Url(str):
                pass

            url = Url(f"https://huggingface.co/{repo_id}")
            url.repo_id = repo_id
            return url

        def upload_folder(self, repo_id, folder_path, commit_message):
            calls.append(("upload_folder", repo_id, sorted(p.name for p in Path(folder_path).iterdir())))

    monkeypatch.setattr("huggingface_hub.HfApi", FakeApi)
    with pytest.raises(FileNotFoundError, match="attnzoo convert"):
        push_folder(tmp_path, "org/repo")
    done = convert_checkpoint("az_convit_tiny", official_checkpoint(tmp_path), tmp_path / "out")
    assert push_folder(done.folder, "org/repo", private=True) == "https://huggingface.co/org/repo"
    assert calls[-2] == ("create_repo", "org/repo", True, True)
    uploaded = ["README.md", "config.json", "model.safetensors", "provenance.json"]
    assert calls[-1] == ("upload_folder", "org/repo", uploaded)


def test_cli_convert(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ckpt = official_checkpoint(tmp_path)
    assert main(["convert", "az_convit_tiny", str(ckpt), str(tmp_path / "out")]) == 0
    assert "model.safetensors" in capsys.readouterr().out
    assert main(["convert", "az_convit_tiny", str(ckpt), str(tmp_path / "out")]) == 2  # exists
    assert "--overwrite" in capsys.readouterr().err

"""attnzoo release: the plan over the whole manifest, converting and publishing, resuming, failures.

The Hub is a fake ``HfApi`` that keeps uploaded folders in a temporary directory; official files are
written by the tests in the official layout. Nothing touches the network.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import timm
import torch

from attnzoo.backbones import FAMILIES
from attnzoo.cli import main
from attnzoo.weights.manifest import REDISTRIBUTABLE_LICENSES
from attnzoo.zoo.registry import list_models
from attnzoo.zoo.release import format_plan, plan_release, run_release

MODEL = "biformer_tiny"


class FakeHub:
    """What ``HfApi`` calls a release makes: create_repo / upload_folder / file_exists / hf_hub_download."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.uploads: list[str] = []

    def __call__(self, token: str | None = None) -> FakeHub:  # stands in for the HfApi class
        return self

    def create_repo(self, repo_id: str, private: bool = False, exist_ok: bool = False) -> str:
        class Url(str):
            pass

        url = Url(f"https://huggingface.co/{repo_id}")
        url.repo_id = repo_id
        return url

    def upload_folder(self, repo_id: str, folder_path: str, commit_message: str) -> None:
        self.uploads.append(repo_id)
        target = self.root / repo_id
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(folder_path, target)

    def file_exists(self, repo_id: str, filename: str) -> bool:
        return (self.root / repo_id / filename).is_file()

    def hf_hub_download(self, repo_id: str, filename: str) -> str:
        return str(self.root / repo_id / filename)


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    fake = FakeHub(tmp_path / "remote")
    monkeypatch.setattr("huggingface_hub.HfApi", fake)
    return fake


def official_file(folder: Path, seed: int = 0) -> Path:
    """An official BiFormer release file (the official keys are attnzoo's; wrapped as released)."""
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{MODEL}.pth"
    torch.save({"model": timm.create_model(MODEL).state_dict(), "epoch": 299}, path)
    return path


def test_dry_run_plans_every_registered_variant(capsys: pytest.CaptureFixture) -> None:
    steps = plan_release()
    planned = {s.weights.model for s in steps}
    assert planned == set(list_models()), "every registered model has a manifest entry"
    for step in steps:
        family = next(f for f in FAMILIES.values() if step.weights in f.weights)
        if step.publish:
            assert family.license in REDISTRIBUTABLE_LICENSES and step.weights.released
            assert step.repo_id == f"attnzoo/{step.weights.name}" and step.source is not None
        else:
            assert step.reason and not step.repo_id
        if family.license not in REDISTRIBUTABLE_LICENSES:
            assert not step.publish and ("licence" in step.reason or not step.weights.released)
    assert main(["release", "--dry-run", "--org", "my-org"]) == 0
    out = capsys.readouterr().out
    assert f"publish -> my-org/{MODEL}.in1k" in out
    publish = sum(s.publish for s in steps)
    assert out.rstrip().endswith(f"{publish} to publish, {len(steps) - publish} skipped")
    assert "licence 'unknown' does not allow re-hosting" in out


def test_release_converts_publishes_and_resumes(tmp_path: Path, hub: FakeHub) -> None:
    source = official_file(tmp_path / "official")
    steps = plan_release([MODEL], tmp_path / "official")
    assert [s.file for s in steps] == [source] and "from" in format_plan(steps)

    (done,) = run_release(steps, tmp_path / "work", progress=False)
    assert done.status == "published", done.detail
    repo = hub.root / f"attnzoo/{MODEL}.in1k"
    assert sorted(p.name for p in repo.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
        "provenance.json",
    ]
    card = (repo / "README.md").read_text()
    provenance = json.loads((repo / "provenance.json").read_text())
    assert provenance["model"] == MODEL and provenance["tag"] == "in1k"
    assert provenance["source_sha256"] in card
    assert "license: mit" in card and "81.4" in card and "@inproceedings{zhu2023biformer" in card
    assert f'timm.create_model("hf-hub:attnzoo/{MODEL}.in1k"' in card and "AttnZooBackbone" in card
    assert "AutoModelForImageClassification" in card

    # same source again: nothing uploaded; a different file: published again
    (again,) = run_release(steps, tmp_path / "work", progress=False)
    assert again.status == "unchanged" and hub.uploads == [f"attnzoo/{MODEL}.in1k"]
    official_file(tmp_path / "official", seed=1)
    (changed,) = run_release(steps, tmp_path / "work", progress=False)
    assert changed.status == "published" and len(hub.uploads) == 2


def test_a_bad_file_fails_its_step_only(tmp_path: Path, hub: FakeHub, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "official"
    folder.mkdir()
    (folder / f"{MODEL}.pth").write_text("<html>not a checkpoint</html>")
    small = official_file(tmp_path / "tmp_small")
    shutil.move(small, folder / "biformer_small.pth")  # tiny weights under small's name: does not fit
    steps = plan_release([MODEL, "biformer_small"], folder)
    outcomes = run_release(steps, tmp_path / "work", progress=False)
    assert [o.status for o in outcomes] == ["failed", "failed"]
    assert "not a checkpoint" in outcomes[0].detail and "biformer_small" in outcomes[1].detail
    assert hub.uploads == []
    assert main(["release", MODEL, "--from", str(folder), "--workdir", str(tmp_path / "w")]) == 1
    assert "failed" in capsys.readouterr().out


def test_no_push_writes_folders_only(tmp_path: Path, hub: FakeHub) -> None:
    official_file(tmp_path / "official")
    code = main(
        [
            "release",
            MODEL,
            "--from",
            str(tmp_path / "official"),
            "--no-push",
            "--workdir",
            str(tmp_path / "w"),
        ]
    )
    assert code == 0 and hub.uploads == []
    assert (tmp_path / "w" / f"attnzoo--{MODEL}.in1k" / "model.safetensors").is_file()


def test_release_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["release", "no_such_net", "--dry-run"]) == 2
    assert "unknown model 'no_such_net'" in capsys.readouterr().err
    assert main(["release", "--from", str(tmp_path / "missing"), "--dry-run"]) == 2
    assert "not a folder" in capsys.readouterr().err

"""``attnzoo release``: the official weights of every variant, converted, checked and published.

:func:`plan_release` walks the release manifest (every family's ``weights``) and decides, per model
and tag, whether attnzoo publishes a converted copy at ``<org>/<model>.<tag>`` and from which file, or
why not (no weights released, a licence that does not allow re-hosting, weights already on the Hub).
:func:`run_release` then converts each planned file strictly against its model into a Hub folder
(:func:`attnzoo.zoo.publish.convert_checkpoint`) and pushes it. A repo that already holds a release
converted from a file with the same SHA-256 (its ``provenance.json``) is skipped, so an interrupted
release resumes where it stopped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from attnzoo.backbones import FAMILIES, Family, UnknownModelError
from attnzoo.weights import Source, Weights
from attnzoo.weights.fetch import SourceUnavailable, fetch_source, file_sha256
from attnzoo.weights.manifest import REDISTRIBUTABLE_LICENSES, hub_repo_id
from attnzoo.zoo.publish import PROVENANCE_FILE, convert_checkpoint, push_folder

__all__ = ["ReleaseOutcome", "ReleaseStep", "format_plan", "plan_release", "run_release"]


@dataclass(frozen=True)
class ReleaseStep:
    """What the release does with one model and tag.

    ``publish``: convert ``file`` (a local official file) or download ``source`` and publish it at
    ``repo_id``; otherwise ``reason`` says why it is skipped.
    """

    weights: Weights
    license: str
    publish: bool
    reason: str
    repo_id: str = ""
    source: Source | None = None
    file: Path | None = None


@dataclass(frozen=True)
class ReleaseOutcome:
    """What :func:`run_release` did for one planned step."""

    step: ReleaseStep
    status: str  # 'published', 'written' (no push), 'unchanged' (same source already published), 'failed'
    detail: str


def _selected(models: Sequence[str] | None) -> Iterable[tuple[Family, Weights]]:
    records = [(family, w) for family in FAMILIES.values() for w in family.weights]
    if not models:
        return records
    known = {w.model for _, w in records} | {w.name for _, w in records}
    for name in models:
        if name not in known:
            raise UnknownModelError(name, sorted(known))
    return [(f, w) for f, w in records if w.model in models or w.name in models]


def _local_file(weights: Weights, source: Source, folder: Path | None) -> Path | None:
    """The official file in ``folder``: its release name, or ``<model>.<tag>.*`` / ``<model>.*``."""
    if folder is None:
        return None
    names = [source.url.split("?")[0].rstrip("/").rsplit("/", 1)[-1]] if source.url else [source.hub_filename]
    for stem in (weights.name, weights.model):
        names += [f"{stem}{ext}" for ext in (".pth", ".pt", ".pth.tar", ".bin", ".safetensors")]
    return next((folder / n for n in names if n and (folder / n).is_file()), None)


def plan_release(
    models: Sequence[str] | None = None, folder: str | os.PathLike | None = None, org: str | None = None
) -> list[ReleaseStep]:
    """One step per model and tag of the manifest (or of ``models``: names or ``name.tag``)."""
    folder = Path(folder) if folder is not None else None
    steps = []
    for family, w in _selected(models):
        common = dict(weights=w, license=family.license)
        if not w.released:
            reason = w.notes[0] if w.notes else "no weights released"
            steps.append(ReleaseStep(publish=False, reason=reason, **common))
        elif family.license not in REDISTRIBUTABLE_LICENSES:
            linked = ", ".join(s.describe() for s in w.sources)
            reason = f"licence '{family.license}' does not allow re-hosting; linked: {linked}"
            steps.append(ReleaseStep(publish=False, reason=reason, **common))
        elif w.official_hub is not None:
            reason = f"the official weights are on the Hub already: hf-hub:{w.official_hub.hf_hub_id}"
            steps.append(ReleaseStep(publish=False, reason=reason, **common))
        else:
            source = w.sources[0]
            file = _local_file(w, source, folder)
            reason = f"from {file}" if file else f"download {source.describe()}"
            repo_id = hub_repo_id(w.model, w.tag, org)
            steps.append(
                ReleaseStep(publish=True, reason=reason, repo_id=repo_id, source=source, file=file, **common)
            )
    return steps


def format_plan(steps: Sequence[ReleaseStep]) -> str:
    """The plan as a table: one line per model and tag."""
    width = max((len(s.weights.name) for s in steps), default=0)
    lines = []
    for s in steps:
        what = f"publish -> {s.repo_id} ({s.reason})" if s.publish else f"skip: {s.reason}"
        lines.append(f"{s.weights.name.ljust(width)}  {what}")
    publish = sum(s.publish for s in steps)
    lines.append(f"{publish} to publish, {len(steps) - publish} skipped")
    return "\n".join(lines)


class HubRepos:
    """The Hub side of a release: what a repo already holds, and pushing a folder to it."""

    def __init__(self, token: str | None = None, private: bool = False) -> None:
        from huggingface_hub import HfApi

        self.api = HfApi(token=token)
        self.token = token
        self.private = private

    def published_sha256(self, repo_id: str) -> str | None:
        """The source SHA-256 recorded in ``repo_id``'s provenance file, if the repo has one."""
        if not self.api.file_exists(repo_id, PROVENANCE_FILE):
            return None
        path = self.api.hf_hub_download(repo_id, PROVENANCE_FILE)
        return json.loads(Path(path).read_text(encoding="utf-8")).get("source_sha256")

    def push(self, folder: Path, repo_id: str) -> str:
        return push_folder(folder, repo_id, token=self.token, private=self.private)


def run_release(
    steps: Sequence[ReleaseStep],
    workdir: str | os.PathLike,
    push: bool = True,
    private: bool = False,
    progress: bool = True,
) -> list[ReleaseOutcome]:
    """Convert and (with ``push``) publish every ``publish`` step; a failed step does not stop the rest.

    Whatever fails in a step (a download, a file that does not fit, the Hub) is its outcome's detail,
    on one line; Ctrl-C and SIGTERM stop the whole release, after each step's clean-up has run.
    """
    workdir = Path(workdir)
    hub = HubRepos(private=private) if push else None
    outcomes = []
    todo = [s for s in steps if s.publish]
    for step in tqdm(todo, desc="release", unit="model", disable=not progress):
        try:
            outcomes.append(_release_one(step, workdir, hub, progress))
        except Exception as err:  # noqa: BLE001 - reported as the step's outcome; the next step runs
            outcomes.append(ReleaseOutcome(step, "failed", _first_line(err)))
    return outcomes


def _first_line(err: Exception) -> str:
    """What went wrong, on one line; the exception's type where it has no message or is not ours."""
    line = next((part.strip() for part in str(err).splitlines() if part.strip()), "")
    if line and isinstance(err, (SourceUnavailable, OSError, ValueError)):
        return line
    return f"{type(err).__name__}: {line}" if line else type(err).__name__


def _release_one(step: ReleaseStep, workdir: Path, hub: HubRepos | None, progress: bool) -> ReleaseOutcome:
    assert step.source is not None
    file = step.file or fetch_source(step.weights, step.source, progress)
    sha = file_sha256(file)
    if hub is not None and hub.published_sha256(step.repo_id) == sha:
        return ReleaseOutcome(
            step, "unchanged", f"{step.repo_id} already holds {file.name} (sha256 {sha[:12]})"
        )
    folder = workdir / step.repo_id.replace("/", "--")
    convert_checkpoint(
        step.weights.model,
        file,
        folder,
        overwrite=True,
        weights=step.weights,
        repo_id=step.repo_id,
        source_name=step.source.describe(),
    )
    if hub is None:
        return ReleaseOutcome(step, "written", str(folder))
    return ReleaseOutcome(step, "published", hub.push(folder, step.repo_id))

"""Finding a tag's weights: attnzoo's Hub copy first, then the official sources, failing fast.

:func:`fetch_weights` tries, in order, attnzoo's converted copy on the Hub (for weights attnzoo may
re-host) and each official source of the manifest (:mod:`attnzoo.weights.manifest`). A source is
used from the local cache when it is there; otherwise it is downloaded unless the machine is offline
(``HF_HUB_OFFLINE=1``). Every network call is a single try with a short timeout
(``ATTNZOO_DOWNLOAD_TIMEOUT``, default 10 s): ``huggingface_hub`` alone retries an unreachable host
for about 25 s per file, and a hanging release server would block a ``pretrained=True`` forever. When
nothing works, one :class:`PretrainedUnavailableError` names the tag, every source tried with why it
failed, and how to pass a local file.

Direct downloads are cached under torch.hub's checkpoint folder as ``<model>.<tag>.<ext>`` (release
links such as OneDrive's ``.../root/content`` say nothing in their file name), written through a
``.partial`` file and checked (SHA-256 when the manifest has one; never an HTML page) before use; the
SHA-256 a download had is kept beside it (``<file>.sha256``), so a cached file that changed later
(flipped bytes: the torch format has no checksum of its own) is fetched again instead of loaded.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from attnzoo.weights.manifest import Source, Weights, hub_repo_id

__all__ = [
    "Candidate",
    "PretrainedUnavailableError",
    "SourceUnavailable",
    "candidate_sources",
    "download_timeout",
    "fetch_source",
    "fetch_weights",
    "file_sha256",
    "url_cache_path",
]


class PretrainedUnavailableError(RuntimeError):
    """No source of a pretrained tag could be used; the message lists each source and its failure."""


class SourceUnavailable(Exception):
    """One source failed (not cached while offline, missing remotely, unreachable, bad file)."""


@dataclass(frozen=True)
class Candidate:
    """A source to try, and whether it holds attnzoo's converted copy (else the official file)."""

    source: Source
    converted: bool = False


def download_timeout() -> float:
    """Seconds a single network request may take (``ATTNZOO_DOWNLOAD_TIMEOUT``, default 10)."""
    return float(os.environ.get("ATTNZOO_DOWNLOAD_TIMEOUT") or 10.0)


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.is_offline_mode())


def candidate_sources(weights: Weights, rehosted: bool) -> list[Candidate]:
    """attnzoo's Hub copy first (when the family re-hosts this tag), then the official sources."""
    out = (
        [Candidate(Source(hf_hub_id=hub_repo_id(weights.model, weights.tag)), converted=True)]
        if rehosted
        else []
    )
    return out + [Candidate(s) for s in weights.sources]


def url_cache_path(weights: Weights, source: Source) -> Path:
    """Where a direct download of ``source`` for ``weights`` is cached."""
    suffix = ".safetensors" if source.url.split("?")[0].endswith(".safetensors") else ".pth"
    return Path(torch.hub.get_dir()) / "checkpoints" / f"{weights.name}{suffix}"


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_file(path: Path, source: Source, sha256: str | None = None) -> None:
    """A downloaded or cached file must not be an error page and must match a known SHA-256: the
    release's, else the one recorded when attnzoo downloaded it (``sha256``; ``None``: not known)."""
    with path.open("rb") as f:
        head = f.read(512).lstrip()
    if not head:
        raise SourceUnavailable(f"{path} is empty")
    if head[:1] == b"<" or head[:9].lower() == b"<!doctype":
        raise SourceUnavailable(f"the server sent an HTML page, not a checkpoint ({path})")
    expected = source.sha256.lower() or sha256
    if expected and (sha256 or file_sha256(path)) != expected:
        raise SourceUnavailable(f"{path} does not have the release's SHA-256 {source.sha256}")


def _recorded_sha256(path: Path) -> Path:
    """The file beside a download that holds the SHA-256 it had when it was downloaded."""
    return path.with_name(f"{path.name}.sha256")


def _fetch_url(weights: Weights, source: Source, progress: bool) -> Path:
    path = url_cache_path(weights, source)
    recorded = _recorded_sha256(path)
    if path.is_file():
        try:
            _check_file(path, source)
            if recorded.is_file() and file_sha256(path) != recorded.read_text().strip():
                raise SourceUnavailable(f"{path} changed since it was downloaded")
            return path
        except SourceUnavailable:
            path.unlink()  # a bad cached file is fetched again, never used
            recorded.unlink(missing_ok=True)
    if _offline():
        raise SourceUnavailable(f"not cached at {path} and HF_HUB_OFFLINE is set")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    request = urllib.request.Request(source.url, headers={"User-Agent": "attnzoo"})
    try:
        with (
            urllib.request.urlopen(request, timeout=download_timeout()) as response,
            partial.open("wb") as out,
        ):
            total = int(response.headers.get("Content-Length") or 0) or None
            digest = hashlib.sha256()
            with tqdm(total=total, unit="B", unit_scale=True, desc=weights.name, disable=not progress) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        _check_file(partial, source, digest.hexdigest())
        recorded.write_text(digest.hexdigest() + "\n")
        partial.replace(path)
    except urllib.error.HTTPError as err:
        raise SourceUnavailable(f"HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise SourceUnavailable(f"unreachable ({reason})") from None
    finally:
        partial.unlink(missing_ok=True)
    return path


def _fetch_hub(source: Source) -> Path:
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url, try_to_load_from_cache

    cached = try_to_load_from_cache(source.hf_hub_id, source.hub_filename)
    if isinstance(cached, str) and _intact_hub_blob(Path(cached)):
        return Path(cached)
    if _offline():
        raise SourceUnavailable("not in the Hugging Face cache and HF_HUB_OFFLINE is set")
    try:
        # One request, no retries: tells a missing repo / file or an unreachable Hub apart in seconds.
        get_hf_file_metadata(hf_hub_url(source.hf_hub_id, source.hub_filename), timeout=download_timeout())
        return Path(hf_hub_download(source.hf_hub_id, source.hub_filename, etag_timeout=download_timeout()))
    except Exception as err:  # noqa: BLE001 - every failure is reported with the source, then the next is tried
        first_line = (str(err).strip().splitlines() or [""])[0]
        raise SourceUnavailable(f"{type(err).__name__}: {first_line}") from None


def _intact_hub_blob(path: Path) -> bool:
    """Whether a cached Hub file still has the content the Hub named it by.

    The Hub cache stores large (LFS) files as ``blobs/<sha256>``, linked from the snapshot: a blob whose
    content no longer hashes to its name (a damaged disk, an interrupted copy) is deleted, so it is
    downloaded again instead of being loaded. Small files are named by their git hash and not checked.
    """
    blob = path.resolve()
    if len(blob.name) != 64 or any(c not in "0123456789abcdef" for c in blob.name):
        return True
    if file_sha256(blob) == blob.name:
        return True
    blob.unlink(missing_ok=True)
    path.unlink(missing_ok=True)
    return False


def fetch_source(weights: Weights, source: Source, progress: bool = True) -> Path:
    """The local path of ``source`` (cached or downloaded); :class:`SourceUnavailable` if it cannot be had."""
    return _fetch_hub(source) if source.hf_hub_id else _fetch_url(weights, source, progress)


def fetch_weights(weights: Weights, rehosted: bool, progress: bool = True) -> tuple[Path, Candidate]:
    """The first usable file of ``weights``' candidates, and which candidate it is."""
    if not weights.released:
        raise PretrainedUnavailableError(
            f"{weights.model} has no released pretrained weights (tag '{weights.tag}'); "
            "create it with pretrained=False, or pass your own checkpoint with "
            "pretrained_cfg_overlay=dict(file='path/to/checkpoint')"
        )
    tried = []
    for candidate in candidate_sources(weights, rehosted):
        try:
            return fetch_source(weights, candidate.source, progress), candidate
        except SourceUnavailable as err:
            what = "attnzoo copy" if candidate.converted else "official"
            tried.append(f"  - {candidate.source.describe()} ({what}): {err}")
    raise PretrainedUnavailableError(
        f"no pretrained weights for {weights.name} could be loaded; tried:\n"
        + "\n".join(tried)
        + f"\nDownload one of them yourself and pass it: timm.create_model('{weights.model}', "
        "pretrained=True, pretrained_cfg_overlay=dict(file='path/to/file'))"
    )

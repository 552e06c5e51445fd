"""Where ``export``, ``convert`` and ``release`` write.

A target that cannot be written is refused before any work starts, so a typo costs nothing and
nothing is half-written; a finished folder replaces an old one by renames, and whatever stops the
replacement (a failed rename, Ctrl-C, SIGTERM) puts the old folder back.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["check_target", "replace_folder"]


def check_target(path: str | os.PathLike[str], *, folder: bool) -> Path:
    """``path`` as a ``Path`` if a file (or, with ``folder``, a folder) can be written there.

    Otherwise an ``OSError`` whose message names the path and why: a folder where a file goes
    (``.`` included) or a file where a folder goes, the current folder (or one above it) as a folder
    to replace, a parent path that is a file, a parent without write permission. An existing target
    of the right kind passes; whether to replace it is the caller's decision.
    """
    path, where = Path(path), Path(os.path.abspath(path))  # abspath: '..' resolved, symlinks kept
    if folder and where in (Path.cwd(), *Path.cwd().parents):
        raise IsADirectoryError(f"{path} is the current folder or holds it; give the path of a new folder")
    if path.is_dir() and not folder:
        raise IsADirectoryError(f"{path} is a folder; give the path of the file to write")
    if path.exists() and folder and not path.is_dir():
        raise NotADirectoryError(f"{path} is a file, not a folder; remove it or give another path")
    parent = path.parent  # as the user wrote it, for the message
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise NotADirectoryError(f"cannot write {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write {path}: no permission to write in {parent}")
    return path


def replace_folder(folder: Path, staging: Path) -> None:
    """Move the complete ``staging`` folder to ``folder``; an old ``folder`` is deleted only once the
    new one is in place, and comes back if anything (an error or a signal) stops the move."""
    if not folder.exists():
        staging.rename(folder)
        return
    old = folder.with_name(f".{folder.name}.replaced-{os.getpid()}")
    folder.rename(old)
    try:
        staging.rename(folder)
    except BaseException:  # an OSError, or KeyboardInterrupt / SIGTERM between the two renames
        if not folder.exists():
            old.rename(folder)
        raise
    shutil.rmtree(old)

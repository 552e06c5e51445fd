"""The repo's configs through OpenMMLab's own entry points: the ``tools/train.py`` / ``tools/test.py`` that
mmdet and mmsegmentation install (``<package>/.mim/tools``, what ``mim train`` runs).

Each tool runs as a user runs it, ``python <tool> CONFIG ...`` in a fresh process, so the config's
``custom_imports=dict(imports=['attnzoo.mm'])`` is the only attnzoo code that runs before the checkpoint
is loaded: it registers the backbone and allow-lists mmengine's checkpoint types for torch >= 2.6's
``weights_only`` loads. Same synthetic sets and checks as tests/mm/test_tools.py (losses fall; test.py on
the last checkpoint gives the metric the last validation logged).
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers.mm_data import (
    assert_losses_fall,
    assert_test_repeats_validation,
    retinanet_config,
    upernet_config,
)


def _installed_tool(package: str, name: str) -> Path:
    tool = Path(importlib.import_module(package).__file__).parent / ".mim" / "tools" / f"{name}.py"
    assert tool.is_file(), f"{package} was installed without its tools: {tool} is missing"
    return tool


def _run(tool: Path, *args: str | Path, cwd: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    command = [sys.executable, str(tool), *map(str, args)]
    proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{tool} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def _test_metrics(work_dir: Path) -> dict:
    """The metrics a test run wrote (mmengine's LoggerHook: ``<work_dir>/<timestamp>/<timestamp>.json``)."""
    (path,) = work_dir.glob("*/*.json")
    return json.loads(path.read_text())


@pytest.mark.parametrize(
    ("package", "make_config", "checkpoint", "iterations", "metric"),
    [
        pytest.param("mmdet", retinanet_config, "epoch_4.pth", 8, "coco/bbox_mAP_50", id="det"),
        pytest.param("mmseg", upernet_config, "iter_6.pth", 6, "mIoU", id="seg"),
    ],
)
def test_installed_train_and_test_tools(
    tmp_path: Path,
    package: str,
    make_config: Callable[[Path], Path],
    checkpoint: str,
    iterations: int,
    metric: str,
) -> None:
    cfg = make_config(tmp_path)
    work, test = tmp_path / "work", tmp_path / "test"
    _run(_installed_tool(package, "train"), cfg, "--work-dir", work, cwd=tmp_path)
    assert_losses_fall(work, iterations)
    _run(_installed_tool(package, "test"), cfg, work / checkpoint, "--work-dir", test, cwd=tmp_path)
    assert_test_repeats_validation(_test_metrics(test), work, metric)

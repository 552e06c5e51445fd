"""tools/train.py and tools/test.py on the repo's configs, with tiny synthetic COCO / ADE20K-style sets.

On CPU: a few iterations of training (losses must fall), validation, a checkpoint, evaluation of that
checkpoint by tools/test.py (the number the training run's last validation logged for the same weights,
so a checkpoint that does not round-trip or a metric that is not deterministic fails), and a 2-process
tools/dist_train.sh run (gloo). The synthetic sets and shrunk configs are tests/helpers/mm_data.py's;
tests/mm/test_openmmlab_entry_points.py runs the same configs through mmdet's / mmseg's own tools.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers.mm_data import (
    ROOT,
    assert_losses_fall,
    assert_test_repeats_validation,
    losses,
    retinanet_config,
    upernet_config,
)


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(f"attnzoo_tools_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _train_and_test(cfg, checkpoint: str, iterations: int, metric: str) -> None:
    """tools/train.py (losses fall), then tools/test.py on its last checkpoint (repeats the validation)."""
    work = cfg.parent / "work"
    _tool("train").main([str(cfg), "--work-dir", str(work)])
    assert_losses_fall(work, iterations)
    metrics = _tool("test").main([str(cfg), str(work / checkpoint), "--work-dir", str(cfg.parent / "test")])
    assert_test_repeats_validation(metrics, work, metric)


def test_train_and_test_retinanet_config(tmp_path):
    _train_and_test(retinanet_config(tmp_path), "epoch_4.pth", 8, "coco/bbox_mAP_50")


@pytest.mark.slow  # the default tier runs this config through mmseg's own tools (test_openmmlab_entry_points)
def test_train_and_test_upernet_config(tmp_path):
    _train_and_test(upernet_config(tmp_path), "iter_6.pth", 6, "mIoU")


def test_distributed_training_two_cpu_processes(tmp_path):
    """tools/dist_train.sh: torchrun, 2 processes, gloo on CPU (tools/train.py picks it without GPUs)."""
    cfg = retinanet_config(tmp_path)
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(29500 + os.getpid() % 1000), OMP_NUM_THREADS="1")
    env["CUDA_VISIBLE_DEVICES"] = ""
    args = ["bash", str(ROOT / "tools/dist_train.sh"), str(cfg), "2", "--work-dir", str(tmp_path / "work")]
    args += [
        "--cfg-options",
        "train_cfg.max_epochs=2",
        "train_cfg.val_interval=2",
        "default_hooks.checkpoint.interval=2",
    ]
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (
        "CpuDistributedDataParallel" in proc.stdout + proc.stderr or (tmp_path / "work/epoch_2.pth").exists()
    )
    logged = losses(tmp_path / "work")  # rank 0's log: 2 epochs x (4 images / 2 ranks / batch 2)
    assert len(logged) == 2 and all(np.isfinite(logged)), logged
    assert (tmp_path / "work/epoch_2.pth").exists()

"""tools/train.py and tools/test.py on the repo's configs, with tiny synthetic COCO / ADE20K-style sets.

On CPU: a few iterations of training (losses must fall), validation, a checkpoint, evaluation of that
checkpoint by tools/test.py (the number the training run's last validation logged for the same weights,
so a checkpoint that does not round-trip or a metric that is not deterministic fails), and a 2-process
tools/dist_train.sh run (gloo).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2  # mmcv's dependency; writes the synthetic images
import numpy as np
from mmengine.config import Config

ROOT = Path(__file__).resolve().parents[2]


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(f"attnzoo_tools_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _logged(work_dir: Path, key: str) -> list[float]:
    """Every value of ``key`` a run logged, in order (training losses, validation metrics)."""
    (scalars,) = work_dir.glob("*/vis_data/scalars.json")
    rows = [json.loads(line) for line in scalars.read_text().splitlines()]
    return [row[key] for row in rows if key in row]


def _losses(work_dir: Path) -> list[float]:
    return _logged(work_dir, "loss")


def _assert_test_repeats_validation(metrics: dict, work_dir: Path, key: str) -> None:
    """tools/test.py on the last checkpoint gives the number the last validation logged for it."""
    validated = _logged(work_dir, key)
    assert validated, f"the training run logged no {key}"
    assert np.isfinite(metrics[key]) and metrics[key] == validated[-1], (metrics, validated)


def _falls(losses: list[float]) -> bool:
    k = max(1, len(losses) // 3)
    return np.mean(losses[-k:]) < np.mean(losses[:k])


def _make_coco(root: Path, n: int = 4, h: int = 64, w: int = 96) -> None:
    """Dark noise with bright boxes, the box colour channel being the class."""
    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True)
    images, anns = [], []
    for i in range(n):
        img = (rng.random((h, w, 3)) * 60).astype(np.uint8)
        for _ in range(2):
            x, y = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 30))
            bw, bh, c = int(rng.integers(16, 40)), int(rng.integers(14, 30)), int(rng.integers(0, 3))
            img[y : y + bh, x : x + bw, c] = 220
            anns.append(
                dict(
                    id=len(anns) + 1,
                    image_id=i + 1,
                    category_id=c + 1,
                    bbox=[x, y, bw, bh],
                    area=bw * bh,
                    iscrowd=0,
                )
            )
        cv2.imwrite(str(root / "img" / f"{i}.png"), img)
        images.append(dict(id=i + 1, file_name=f"{i}.png", height=h, width=w))
    cats = [dict(id=k + 1, name=name) for k, name in enumerate("abc")]
    (root / "ann.json").write_text(json.dumps(dict(images=images, annotations=anns, categories=cats)))


def _make_ade(root: Path, n: int = 4, h: int = 64, w: int = 64) -> None:
    """ADE20K layout: images/training/*.jpg, annotations/training/*.png (0 = ignore, 1..150 classes)."""
    rng = np.random.default_rng(0)
    for split in ("training", "validation"):
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
        for i in range(n):
            label = np.ones((h, w), np.uint8)
            img = (rng.random((h, w, 3)) * 60).astype(np.uint8)
            for cls, channel in ((2, 0), (3, 1)):
                y, x = int(rng.integers(0, h - 24)), int(rng.integers(0, w - 24))
                label[y : y + 24, x : x + 24] = cls
                img[y : y + 24, x : x + 24, channel] = 220
            cv2.imwrite(str(root / "images" / split / f"{i}.jpg"), img)
            cv2.imwrite(str(root / "annotations" / split / f"{i}.png"), label)


def _retinanet_config(tmp_path: Path) -> Path:
    """configs/det/retinanet_biformer_tiny... shrunk to a synthetic 4-image COCO set, saved to a file."""
    data = tmp_path / "coco"
    _make_coco(data)
    cfg = Config.fromfile(ROOT / "configs/det/retinanet_biformer_tiny_fpn_1x_coco.py")
    cfg.model.backbone.update(pretrained=False, drop_path_rate=0.0, n_win=4)
    cfg.model.neck.update(out_channels=32)
    cfg.model.bbox_head.update(num_classes=3, in_channels=32, feat_channels=32, stacked_convs=1)
    load = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", with_bbox=True)]
    resize = dict(type="Resize", scale=(96, 64), keep_ratio=True)
    meta = ("img_id", "img_path", "ori_shape", "img_shape", "scale_factor")
    dataset = dict(
        type="CocoDataset",
        data_root=str(data),
        ann_file="ann.json",
        data_prefix=dict(img="img/"),
        metainfo=dict(classes=("a", "b", "c")),
    )
    loader = dict(num_workers=0, persistent_workers=False)
    cfg.train_dataloader = dict(
        loader,
        batch_size=2,
        sampler=dict(type="DefaultSampler", shuffle=True),
        batch_sampler=dict(type="AspectRatioBatchSampler"),
        dataset=dict(dataset, pipeline=[*load, resize, dict(type="PackDetInputs")]),
    )
    cfg.val_dataloader = cfg.test_dataloader = dict(
        loader,
        batch_size=1,
        drop_last=False,
        sampler=dict(type="DefaultSampler", shuffle=False),
        dataset=dict(
            dataset, test_mode=True, pipeline=[*load, resize, dict(type="PackDetInputs", meta_keys=meta)]
        ),
    )
    cfg.val_evaluator = cfg.test_evaluator = dict(
        type="CocoMetric", ann_file=str(data / "ann.json"), metric="bbox"
    )
    cfg.train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=4, val_interval=4)
    cfg.param_scheduler = None
    cfg.optim_wrapper.optimizer.lr = 1e-3
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = 4
    cfg.randomness = dict(seed=0)
    cfg.dump(str(tmp_path / "cfg.py"))
    return tmp_path / "cfg.py"


def test_train_and_test_retinanet_config(tmp_path):
    _retinanet_config(tmp_path)
    _tool("train").main([str(tmp_path / "cfg.py"), "--work-dir", str(tmp_path / "work")])
    losses = _losses(tmp_path / "work")
    assert len(losses) == 8 and all(np.isfinite(losses)) and _falls(losses), losses
    metrics = _tool("test").main(
        [str(tmp_path / "cfg.py"), str(tmp_path / "work/epoch_4.pth"), "--work-dir", str(tmp_path / "test")]
    )
    _assert_test_repeats_validation(metrics, tmp_path / "work", "coco/bbox_mAP_50")


def test_train_and_test_upernet_config(tmp_path):
    data = tmp_path / "ade"
    _make_ade(data)
    cfg = Config.fromfile(ROOT / "configs/seg/upernet_biformer_tiny_512x512_160k_ade20k.py")
    cfg.model.backbone.update(pretrained=False, drop_path_rate=0.0, n_win=4)
    cfg.model.data_preprocessor.size = (64, 64)
    cfg.model.decode_head.update(channels=32, pool_scales=(1, 2))
    cfg.model.auxiliary_head.update(channels=16)
    load = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", reduce_zero_label=True)]
    pipeline = [*load, dict(type="Resize", scale=(64, 64), keep_ratio=False), dict(type="PackSegInputs")]

    def split(name):
        prefix = dict(img_path=f"images/{name}", seg_map_path=f"annotations/{name}")
        return dict(type="ADE20KDataset", data_root=str(data), data_prefix=prefix, pipeline=pipeline)

    loader = dict(num_workers=0, persistent_workers=False)
    cfg.train_dataloader = dict(
        loader, batch_size=2, sampler=dict(type="InfiniteSampler", shuffle=True), dataset=split("training")
    )
    cfg.val_dataloader = cfg.test_dataloader = dict(
        loader, batch_size=1, sampler=dict(type="DefaultSampler", shuffle=False), dataset=split("validation")
    )
    cfg.val_evaluator = cfg.test_evaluator = dict(type="IoUMetric", iou_metrics=["mIoU"])
    cfg.train_cfg = dict(type="IterBasedTrainLoop", max_iters=6, val_interval=6)
    cfg.param_scheduler = None
    cfg.optim_wrapper.optimizer.lr = 1e-3
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = 6
    cfg.randomness = dict(seed=0)
    cfg.dump(str(tmp_path / "cfg.py"))

    _tool("train").main([str(tmp_path / "cfg.py"), "--work-dir", str(tmp_path / "work")])
    losses = _losses(tmp_path / "work")
    assert len(losses) == 6 and all(np.isfinite(losses)) and _falls(losses), losses
    metrics = _tool("test").main(
        [str(tmp_path / "cfg.py"), str(tmp_path / "work/iter_6.pth"), "--work-dir", str(tmp_path / "test")]
    )
    _assert_test_repeats_validation(metrics, tmp_path / "work", "mIoU")


def test_distributed_training_two_cpu_processes(tmp_path):
    """tools/dist_train.sh: torchrun, 2 processes, gloo on CPU (tools/train.py picks it without GPUs)."""
    cfg = _retinanet_config(tmp_path)
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
    losses = _losses(tmp_path / "work")  # rank 0's log: 2 epochs x (4 images / 2 ranks / batch 2)
    assert len(losses) == 2 and all(np.isfinite(losses)), losses
    assert (tmp_path / "work/epoch_2.pth").exists()

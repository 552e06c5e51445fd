"""Tiny synthetic COCO / ADE20K-style sets, the repo's det / seg configs shrunk onto them, and the checks
of a training run's log, shared by the tests of the project's tools and of OpenMMLab's own tools."""

from __future__ import annotations

import json
from pathlib import Path

import cv2  # mmcv's dependency; writes the synthetic images
import numpy as np
from mmengine.config import Config

ROOT = Path(__file__).resolve().parents[2]


def logged(work_dir: Path, key: str) -> list[float]:
    """Every value of ``key`` a training run logged, in order (training losses, validation metrics)."""
    (scalars,) = work_dir.glob("*/vis_data/scalars.json")
    rows = [json.loads(line) for line in scalars.read_text().splitlines()]
    return [row[key] for row in rows if key in row]


def losses(work_dir: Path) -> list[float]:
    return logged(work_dir, "loss")


def falls(values: list[float]) -> bool:
    """The mean of the last third is below the mean of the first third."""
    k = max(1, len(values) // 3)
    return np.mean(values[-k:]) < np.mean(values[:k])


def assert_losses_fall(work_dir: Path, iterations: int) -> list[float]:
    """One finite loss logged per iteration, falling over the run."""
    values = losses(work_dir)
    assert len(values) == iterations and all(np.isfinite(values)) and falls(values), values
    return values


def assert_test_repeats_validation(metrics: dict, work_dir: Path, key: str) -> None:
    """A test run on the last checkpoint gives the number the last validation logged for it."""
    validated = logged(work_dir, key)
    assert validated, f"the training run logged no {key}"
    assert np.isfinite(metrics[key]) and metrics[key] == validated[-1], (metrics, validated)


def make_coco(root: Path, n: int = 4, h: int = 64, w: int = 96) -> None:
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


def make_ade(root: Path, n: int = 4, h: int = 64, w: int = 64) -> None:
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


def _short_run(cfg: Config, path: Path) -> Path:
    """Log every iteration, no schedule, seeded; saved to ``path`` (what both tool sets read)."""
    cfg.param_scheduler = None
    cfg.optim_wrapper.optimizer.lr = 1e-3
    cfg.default_hooks.logger.interval = 1
    cfg.randomness = dict(seed=0)
    cfg.dump(str(path))
    return path


def retinanet_config(tmp_path: Path) -> Path:
    """configs/det/retinanet_biformer_tiny... on a synthetic 4-image COCO set: 4 epochs of 2 iterations,
    validated and saved (``epoch_4.pth``) at the end. Returns the saved config file."""
    data = tmp_path / "coco"
    make_coco(data)
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
    cfg.default_hooks.checkpoint.interval = 4
    return _short_run(cfg, tmp_path / "cfg.py")


def upernet_config(tmp_path: Path) -> Path:
    """configs/seg/upernet_biformer_tiny... on a synthetic 4-image ADE20K-style set: 6 iterations,
    validated and saved (``iter_6.pth``) at the end. Returns the saved config file."""
    data = tmp_path / "ade"
    make_ade(data)
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
    cfg.default_hooks.checkpoint.interval = 6
    return _short_run(cfg, tmp_path / "cfg.py")

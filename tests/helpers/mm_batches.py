"""Tiny synthetic det / seg batches (what a data loader hands ``data_preprocessor``), shared by the tests
that train a detector or segmentor for a few steps in memory."""

from __future__ import annotations

import numpy as np
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.structures import InstanceData, PixelData
from mmseg.structures import SegDataSample


def det_batch(h: int = 96, w: int = 128, n_images: int = 2, masks: bool = False) -> dict:
    """Random images with three boxes each; ``masks``: each box's filled rectangle as its mask."""
    gen = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for _ in range(n_images):
        inputs.append(torch.randint(0, 256, (3, h, w), generator=gen, dtype=torch.uint8))
        xy = torch.rand(3, 2, generator=gen) * torch.tensor([w * 0.6, h * 0.6])
        wh = 12 + torch.rand(3, 2, generator=gen) * torch.tensor([w * 0.3, h * 0.3])
        sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), scale_factor=(1.0, 1.0)))
        bboxes = torch.cat([xy, xy + wh], dim=1)
        sample.gt_instances = InstanceData(bboxes=bboxes, labels=torch.randint(0, 3, (3,), generator=gen))
        if masks:
            bitmaps = np.zeros((3, h, w), dtype=np.uint8)
            for bitmap, (x0, y0, x1, y1) in zip(bitmaps, bboxes.round().int().tolist(), strict=True):
                bitmap[y0:y1, x0:x1] = 1
            sample.gt_instances.masks = BitmapMasks(bitmaps, h, w)
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def seg_batch() -> dict:
    """Two 64 x 96 images labelled in four quadrants, one class darkened in the image."""
    gen = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for _ in range(2):
        img = torch.randint(0, 256, (3, 64, 96), generator=gen, dtype=torch.uint8)
        label = torch.zeros(1, 64, 96, dtype=torch.long)
        label[:, 32:, :48], label[:, :32, 48:], label[:, 32:, 48:] = 1, 2, 3  # quadrants
        img[0, label[0] == 1] //= 2  # some signal in the image
        sample = SegDataSample(metainfo=dict(img_shape=(64, 96), ori_shape=(64, 96), pad_shape=(64, 96)))
        sample.gt_sem_seg = PixelData(data=label)
        inputs.append(img)
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)

# RetinaNet + FPN, OverLoCK-T backbone (the official detection form), COCO 1x. The official repo has no
# RetinaNet config or result: the RetinaNet fragment's recipe (AdamW lr 1e-4, weight decay 1e-4, mmdet's
# 1x) with the official Mask R-CNN 1x drop_path_rate (0.2) and SyncBN in the backbone when distributed.
_base_ = ["../_base_/retinanet_fpn_1x_coco.py"]

model = dict(
    backbone=dict(model_name="overlock_t", dense_form="det", drop_path_rate=0.2),
    neck=dict(in_channels=[64, 128, 384, 640]),
)

sync_bn = "torch"

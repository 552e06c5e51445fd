# Mask R-CNN + FPN, OverLoCK-T backbone, COCO 3x (36 epochs) with multi-scale + crop training: the 1x
# config with the official mask_rcnn_overlock_t_in1k_fpn_3x_coco.py's changes (OverLoCK repo,
# detection/configs/maskrcnn_overlock/, with its _base_ schedule_3x.py):
# AdamW lr 1e-4 (the 1x config's weight decay 0.05 and no decay on norms), 36 epochs with steps at 27
# and 33, 500 warm-up iterations; the DETR-style augmentation of ../_base_/mask-rcnn_fpn_ms-crop-3x_coco.py
# (mmdet 3's RandomChoice + RandomChoiceResize for mmdet 2's AutoAugment + Resize(multiscale_mode='value')).
# Batch 16 (8 GPUs x 2), as the 1x config.
# Target (official detection/readme.md): 49.6 box AP / 43.9 mask AP; official detector checkpoint
# https://github.com/LMMMEng/OverLoCK/releases/download/v1/maskrcnn3x_overlock_tiny_coco.pth
_base_ = ["../_base_/mask-rcnn_fpn_ms-crop-3x_coco.py"]

model = dict(
    backbone=dict(model_name="overlock_t", dense_form="det", drop_path_rate=0.2),
    neck=dict(in_channels=[64, 128, 384, 640]),
)

param_scheduler = [
    dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type="MultiStepLR", begin=0, end=36, by_epoch=True, milestones=[27, 33], gamma=0.1),
]

sync_bn = "torch"

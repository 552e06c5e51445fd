# Mask R-CNN + FPN, OverLoCK-T backbone (the official detection form), COCO 1x (12 epochs), on mmdet's
# bundled base config (8 GPUs x 2 images, as the official run).
# Fine-tuning choices from the official OverLoCK repo (detection/configs/maskrcnn_overlock/
# mask_rcnn_overlock_t_in1k_fpn_1x_coco.py and its _base_ schedule_1x.py):
# AdamW lr 2e-4, betas (0.9, 0.999), weight decay 0.05 with no decay on norm layers,
# drop_path_rate 0.2, linear warm-up over 500 iterations from 1e-3, steps at epochs 8 and 11
# (mmdet's 1x schedule); the backbone's BatchNorms are SyncBN in distributed runs (sync_bn below).
# dense_form='det': LayerNorm'd outputs plus the Overview context on the last level, the layout of the
# official detector's backbone (channels 64 / 128 / 384 / 640). pretrained=True loads the official
# ImageNet-1k checkpoint (overlock_t_in1k_224.pth) as the official config does.
# Target (official detection/readme.md): 48.3 box AP / 43.3 mask AP; official detector checkpoint
# https://github.com/LMMMEng/OverLoCK/releases/download/v1/maskrcnn1x_overlock_tiny_coco.pth
# (its backbone.* weights load with backbone.pretrained='path/to/it.pth').
_base_ = ["../_base_/mask-rcnn_fpn_1x_coco.py"]

model = dict(
    backbone=dict(model_name="overlock_t", dense_form="det", drop_path_rate=0.2),
    neck=dict(in_channels=[64, 128, 384, 640]),
)

optim_wrapper = dict(optimizer=dict(lr=0.0002))

# The official backbone converts its BatchNorms to SyncBatchNorm when training is distributed; mmengine
# does the same (for the whole detector, whose neck and heads have no BatchNorm) with:
sync_bn = "torch"

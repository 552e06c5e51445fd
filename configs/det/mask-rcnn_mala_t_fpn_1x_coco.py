# Mask R-CNN + FPN, MALA-T backbone (the official detection form), COCO 1x (12 epochs), on mmdet's
# bundled base config (8 GPUs x 2 images, as the official run).
# Fine-tuning choices from the official MALA repo (detect/configs/MALA/maskrcnn_t_1x.py and its
# _base_ files): AdamW lr 4e-4, betas (0.9, 0.999), weight decay 0.05 with no decay on norm layers,
# drop_path_rate 0.1, mmdet's 1x schedule (steps at epochs 8 and 11, 500 warm-up iterations); the
# official run used fp16 (add --amp) and SyncBN in the backbone (sync_bn below).
# dense_form='det': a LayerNorm on each stage output and no classifier head, the layout of the official
# detector's backbone (detect/mmdet/models/backbones/MALA.py; channels 64 / 128 / 256 / 512).
# pretrained=True loads the official ImageNet-1k checkpoint from the Hub, as the official config does.
_base_ = ["../_base_/mask-rcnn_fpn_1x_coco.py"]

model = dict(
    backbone=dict(model_name="mala_t", dense_form="det", drop_path_rate=0.1),
    neck=dict(in_channels=[64, 128, 256, 512]),
)

optim_wrapper = dict(optimizer=dict(lr=0.0004))

# The official backbone uses SyncBatchNorm; mmengine converts the detector's BatchNorms when distributed:
sync_bn = "torch"

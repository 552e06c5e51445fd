# Mask R-CNN + FPN, InLine-PVT-T backbone, COCO 1x (12 epochs), on mmdet's bundled base config
# (8 GPUs x 2 images).
# InLine (LeapLabTHU/InLine) publishes no detection code, configs or results: this is attnzoo's set-up,
# not a reproduction. Fine-tuning choices are PVT v1's published COCO recipe (the PVT paper; mmdet's
# configs/pvt/*): AdamW lr 1e-4, betas (0.9, 0.999), weight decay 1e-4, mmdet's 1x schedule (steps at
# epochs 8 and 11, 500 warm-up iterations), with the backbone's own ImageNet drop_path_rate
# (cfgs/inline_pvt_t.yaml: 0.1).
# The backbone gives its raw stage outputs (no dense form, no extra norms; channels 64 / 128 / 320 / 512,
# strides 4 / 8 / 16 / 32); position embeddings are resampled to each image's size.
# pretrained=True loads the official ImageNet-1k checkpoint (the README's TsinghuaCloud link).
_base_ = ["../_base_/mask-rcnn_fpn_1x_coco.py"]

model = dict(
    backbone=dict(model_name="inline_pvt_tiny", drop_path_rate=0.1),
    neck=dict(in_channels=[64, 128, 320, 512]),
)

optim_wrapper = dict(
    _delete_=True,
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=0.0001, betas=(0.9, 0.999), weight_decay=0.0001),
)

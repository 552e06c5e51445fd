# Mask R-CNN + FPN, COCO 3x (mmdet's multi-scale 3x recipe), InLine-PVT-T backbone (stage outputs, strides
# 4-32, channels 64 / 128 / 320 / 512).
# InLine (LeapLabTHU/InLine) publishes no detection / segmentation code, configs or results: this is
# attnzoo's set-up, not a reproduction: the recipe of ../_base_/mask-rcnn_fpn_ms-crop-3x_coco.py
# with cfgs/inline_pvt_t.yaml's ImageNet drop_path_rate.
_base_ = ["../_base_/mask-rcnn_fpn_ms-crop-3x_coco.py"]

model = dict(
    backbone=dict(model_name="inline_pvt_tiny", drop_path_rate=0.1),
    neck=dict(in_channels=[64, 128, 320, 512]),
)

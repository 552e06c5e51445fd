# RetinaNet + FPN, COCO 1x, InLine-Swin-T backbone (stage outputs, strides 4-32, channels 96 / 192 / 384 /
# 768).
# InLine (LeapLabTHU/InLine) publishes no detection / segmentation code, configs or results: this is
# attnzoo's set-up, not a reproduction: the recipe of ../_base_/retinanet_fpn_1x_coco.py
# with cfgs/inline_swin_t.yaml's ImageNet drop_path_rate.
_base_ = ["../_base_/retinanet_fpn_1x_coco.py"]

model = dict(
    backbone=dict(model_name="inline_swin_tiny", drop_path_rate=0.2),
    neck=dict(in_channels=[96, 192, 384, 768]),
)

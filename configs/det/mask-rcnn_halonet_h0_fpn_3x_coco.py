# Mask R-CNN + FPN, COCO 3x (mmdet's multi-scale 3x recipe), HaloNet-H0 backbone (stage outputs, strides
# 4-32, channels 32 / 64 / 128 / 256).
# The HaloNet paper's H-series has no released code, weights or dense recipe (pretrained=False: train
# from scratch or pass a checkpoint as backbone.pretrained='path'); HaloNet-H0's stride-2 stem output,
# feature_info 0, is skipped: this is attnzoo's set-up, not a reproduction: the recipe of
# ../_base_/mask-rcnn_fpn_ms-crop-3x_coco.py
# with drop_path_rate 0.1 (attnzoo's choice).
_base_ = ["../_base_/mask-rcnn_fpn_ms-crop-3x_coco.py"]

model = dict(
    backbone=dict(model_name="az_halonet_h0", drop_path_rate=0.1, out_indices=(1, 2, 3, 4), pretrained=False),
    neck=dict(in_channels=[32, 64, 128, 256]),
)

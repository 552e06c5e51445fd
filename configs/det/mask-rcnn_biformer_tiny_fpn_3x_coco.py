# Mask R-CNN + FPN, BiFormer-T backbone (the official detection form), COCO 3x: the BiFormer 1x settings
# (the official maskrcnn.1x.biformer_small.py's AdamW lr 1e-4, weight decay 0.05 without decay on norms,
# drop_path_rate 0.2, norm_eval=True) on mmdet's multi-scale 3x recipe
# (../_base_/mask-rcnn_fpn_ms-crop-3x_coco.py). The official repo has no 3x config or result: a recipe,
# not a reproduction.
_base_ = ["../_base_/mask-rcnn_fpn_ms-crop-3x_coco.py"]

model = dict(
    backbone=dict(model_name="biformer_tiny", dense_form="det", drop_path_rate=0.2, norm_eval=True),
    neck=dict(in_channels=[64, 128, 256, 512]),
)

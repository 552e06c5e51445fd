# mask-rcnn_biformer_base_fpn_3x_coco: the BiFormer-T 3x config with the base backbone and the official
# maskrcnn.1x.biformer_base.py's drop_path_rate (0.3). No official 3x result.
_base_ = ["./mask-rcnn_biformer_tiny_fpn_3x_coco.py"]

model = dict(
    backbone=dict(model_name="biformer_base", drop_path_rate=0.3), neck=dict(in_channels=[96, 192, 384, 768])
)

# retinanet_biformer_base_fpn_1x_coco: the BiFormer-T config with the base backbone
# and the official retinanet.1x.biformer_base.py's drop_path_rate (0.3).
_base_ = ["./retinanet_biformer_tiny_fpn_1x_coco.py"]

model = dict(
    backbone=dict(model_name="biformer_base", drop_path_rate=0.3), neck=dict(in_channels=[96, 192, 384, 768])
)

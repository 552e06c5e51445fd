# retinanet_overlock_b_fpn_1x_coco: the OverLoCK-T RetinaNet config with the base backbone and the
# official Mask R-CNN drop_path_rate (0.6). No official RetinaNet result.
_base_ = ["./retinanet_overlock_t_fpn_1x_coco.py"]

model = dict(
    backbone=dict(model_name="overlock_b", drop_path_rate=0.6), neck=dict(in_channels=[80, 160, 528, 720])
)

# retinanet_overlock_s_fpn_1x_coco: the OverLoCK-T RetinaNet config with the small backbone and the
# official Mask R-CNN drop_path_rate (0.4). No official RetinaNet result.
_base_ = ["./retinanet_overlock_t_fpn_1x_coco.py"]

model = dict(
    backbone=dict(model_name="overlock_s", drop_path_rate=0.4), neck=dict(in_channels=[64, 128, 448, 640])
)

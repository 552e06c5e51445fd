# retinanet_mala_l_fpn_1x_coco: the MALA-T RetinaNet config with the MALA-L backbone and the official
# retinanet_l_1x.py's drop_path_rate (0.55); its other settings (AdamW lr 4e-4, wd 1e-4) are the T one's.
_base_ = ["./retinanet_mala_t_fpn_1x_coco.py"]

model = dict(
    backbone=dict(model_name="mala_l", drop_path_rate=0.55), neck=dict(in_channels=[96, 192, 448, 640])
)

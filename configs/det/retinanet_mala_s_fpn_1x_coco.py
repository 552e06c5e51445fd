# retinanet_mala_s_fpn_1x_coco: the MALA-T RetinaNet config with the MALA-S backbone and the official
# retinanet_s_1x.py's drop_path_rate (0.15); its other settings (AdamW lr 4e-4, wd 1e-4) are the T one's.
_base_ = ["./retinanet_mala_t_fpn_1x_coco.py"]

model = dict(
    backbone=dict(model_name="mala_s", drop_path_rate=0.15), neck=dict(in_channels=[64, 128, 320, 512])
)

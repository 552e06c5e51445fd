# mask-rcnn_mala_b_fpn_3x_coco: the MALA-S 3x config with the MALA-B backbone and the official
# maskrcnn_b_3x.py's drop_path_rate (0.4); its other settings (AdamW lr 4e-4, wd 0.05) are the S one's.
_base_ = ["./mask-rcnn_mala_s_fpn_3x_coco.py"]

model = dict(
    backbone=dict(model_name="mala_b", drop_path_rate=0.4), neck=dict(in_channels=[96, 192, 384, 512])
)

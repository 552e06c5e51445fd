# mask-rcnn_mala_l_fpn_3x_coco: the MALA-S 3x config with the MALA-L backbone and the official
# maskrcnn_l_3x.py's drop_path_rate (0.55) and learning rate (AdamW 2e-4).
_base_ = ["./mask-rcnn_mala_s_fpn_3x_coco.py"]

model = dict(
    backbone=dict(model_name="mala_l", drop_path_rate=0.55), neck=dict(in_channels=[96, 192, 448, 640])
)
optim_wrapper = dict(optimizer=dict(lr=0.0002))

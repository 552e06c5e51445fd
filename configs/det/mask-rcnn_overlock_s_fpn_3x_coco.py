# mask-rcnn_overlock_s_fpn_3x_coco: the OverLoCK-T 3x config with the small backbone and the official
# mask_rcnn_overlock_s_in1k_fpn_3x_coco.py's drop_path_rate (0.4); its other settings are the T one's.
# Target (official detection/readme.md): 51.0 box AP / 45.0 mask AP; official detector checkpoint
# https://github.com/LMMMEng/OverLoCK/releases/download/v1/maskrcnn3x_overlock_small_coco.pth
_base_ = ["./mask-rcnn_overlock_t_fpn_3x_coco.py"]

model = dict(
    backbone=dict(model_name="overlock_s", drop_path_rate=0.4), neck=dict(in_channels=[64, 128, 448, 640])
)

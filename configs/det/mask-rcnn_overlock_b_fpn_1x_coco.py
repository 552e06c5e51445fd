# mask-rcnn_overlock_b_fpn_1x_coco: the OverLoCK-T 1x config with the base backbone and the official
# mask_rcnn_overlock_b_in1k_fpn_1x_coco.py's drop_path_rate (0.6); its other settings are the T one's.
# Target (official detection/readme.md): 49.9 box AP / 44.4 mask AP; official detector checkpoint
# https://github.com/LMMMEng/OverLoCK/releases/download/v1/maskrcnn1x_overlock_base_coco.pth
_base_ = ["./mask-rcnn_overlock_t_fpn_1x_coco.py"]

model = dict(
    backbone=dict(model_name="overlock_b", drop_path_rate=0.6), neck=dict(in_channels=[80, 160, 528, 720])
)

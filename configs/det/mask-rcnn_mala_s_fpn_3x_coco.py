# mask-rcnn_mala_s_fpn_3x_coco: the MALA-T 3x config with the MALA-S backbone and the official
# detect/configs/MALA/maskrcnn_s_3x.py's drop_path_rate (0.15); its other settings (AdamW lr 4e-4,
# wd 0.05, no decay on norms, mmdet's multi-scale 3x recipe) are the official S 3x ones.
_base_ = ["./mask-rcnn_mala_t_fpn_3x_coco.py"]

model = dict(
    backbone=dict(model_name="mala_s", drop_path_rate=0.15), neck=dict(in_channels=[64, 128, 320, 512])
)

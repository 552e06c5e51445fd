# mask-rcnn_inline_swin_b_fpn_1x_coco: the InLine-Swin-T 1x config with the InLine-Swin-B backbone (channels
# 128 / 256 / 512 / 1024) and its own ImageNet drop_path_rate (cfgs/inline_swin_b.yaml: 0.5); the other
# settings (Swin's mmdet recipe: AdamW lr 1e-4, wd 0.05) are the T one's.
_base_ = ["./mask-rcnn_inline_swin_t_fpn_1x_coco.py"]

model = dict(
    backbone=dict(model_name="inline_swin_base", drop_path_rate=0.5),
    neck=dict(in_channels=[128, 256, 512, 1024]),
)

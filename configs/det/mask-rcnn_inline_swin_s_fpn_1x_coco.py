# mask-rcnn_inline_swin_s_fpn_1x_coco: the InLine-Swin-T 1x config with the InLine-Swin-S backbone and its
# own ImageNet drop_path_rate (cfgs/inline_swin_s.yaml: 0.3); same widths, so the neck is unchanged; the
# other settings (Swin's mmdet recipe: AdamW lr 1e-4, wd 0.05) are the T one's.
_base_ = ["./mask-rcnn_inline_swin_t_fpn_1x_coco.py"]

model = dict(backbone=dict(model_name="inline_swin_small", drop_path_rate=0.3))

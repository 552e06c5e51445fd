# mask-rcnn_inline_pvt_small_fpn_1x_coco: the InLine-PVT-T 1x config with the InLine-PVT-S backbone and
# its ImageNet drop_path_rate (cfgs/inline_pvt_s.yaml: 0.1); its other settings (PVT v1's recipe: AdamW
# lr 1e-4, wd 1e-4) are the T one's. InLine publishes no detection results.
_base_ = ["./mask-rcnn_inline_pvt_tiny_fpn_1x_coco.py"]

model = dict(backbone=dict(model_name="inline_pvt_small", drop_path_rate=0.1))

# mask-rcnn_inline_pvt_large_fpn_1x_coco: the InLine-PVT-T 1x config with the InLine-PVT-L backbone and
# its ImageNet drop_path_rate (cfgs/inline_pvt_b.yaml, the README's L: 0.3); its other settings (PVT v1's
# recipe: AdamW lr 1e-4, wd 1e-4) are the T one's. InLine publishes no detection results.
_base_ = ["./mask-rcnn_inline_pvt_tiny_fpn_1x_coco.py"]

model = dict(backbone=dict(model_name="inline_pvt_large", drop_path_rate=0.3))

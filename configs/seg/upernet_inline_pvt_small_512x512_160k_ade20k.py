# upernet_inline_pvt_small_512x512_160k_ade20k: the InLine-PVT-T UperNet config with the InLine-PVT-S
# backbone and its ImageNet drop_path_rate (cfgs/inline_pvt_s.yaml: 0.1); its other settings are
# the T one's. InLine publishes no segmentation results.
_base_ = ["./upernet_inline_pvt_tiny_512x512_160k_ade20k.py"]

model = dict(backbone=dict(model_name="inline_pvt_small", drop_path_rate=0.1))

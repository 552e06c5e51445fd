# upernet_inline_pvt_large_512x512_160k_ade20k: the InLine-PVT-T UperNet config with the InLine-PVT-L
# backbone and its ImageNet drop_path_rate (cfgs/inline_pvt_b.yaml, the README's L: 0.3); its other
# settings are the T one's. InLine publishes no segmentation results.
_base_ = ["./upernet_inline_pvt_tiny_512x512_160k_ade20k.py"]

model = dict(backbone=dict(model_name="inline_pvt_large", drop_path_rate=0.3))

# UperNet 160k, ConViT-Ti (official facebookresearch/convit weights); ConViT publishes no dense
# recipe or result.
# The stated plain-ViT recipe (ViTDet's simple feature pyramid on blocks 3 / 5 / 7 / 11, layer-wise lr
# decay 0.7) of ../_base_/upernet_vit-ti_512x512_160k_ade20k.py, drop_path_rate 0.1.
_base_ = ["../_base_/upernet_vit-ti_512x512_160k_ade20k.py"]

model = dict(backbone=dict(model_name="az_convit_tiny", drop_path_rate=0.1))

# Semantic FPN 80k, Fourier-KArAt ViT-Ti (G = 3, blockwise operators; the operators' token axis is
# resampled to each input's patch grid); the official code and weights are not public (pretrained=False:
# train from scratch or pass a checkpoint as backbone.pretrained='path').
# The stated plain-ViT recipe (ViTDet's simple feature pyramid on blocks 3 / 5 / 7 / 11, layer-wise lr
# decay 0.7) of ../_base_/fpn_vit-ti_512x512_80k_ade20k.py, drop_path_rate 0.1.
_base_ = ["../_base_/fpn_vit-ti_512x512_80k_ade20k.py"]

model = dict(backbone=dict(model_name="karat_vit_tiny_g3b", drop_path_rate=0.1, pretrained=False))

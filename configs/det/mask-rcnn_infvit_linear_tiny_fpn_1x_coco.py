# Mask R-CNN 1x, InfViT linear-Ti; no weights and no dense recipe were released (pretrained=False:
# train from scratch or pass a checkpoint as backbone.pretrained='path').
# The stated plain-ViT recipe (ViTDet's simple feature pyramid on blocks 3 / 5 / 7 / 11, layer-wise lr
# decay 0.7) of ../_base_/mask-rcnn_vit-ti_fpn_1x_coco.py, drop_path_rate 0.1.
_base_ = ["../_base_/mask-rcnn_vit-ti_fpn_1x_coco.py"]

model = dict(backbone=dict(model_name="infvit_linear_tiny_patch16_224", drop_path_rate=0.1, pretrained=False))

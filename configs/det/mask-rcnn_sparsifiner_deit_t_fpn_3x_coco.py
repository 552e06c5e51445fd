# Mask R-CNN 3x, Sparsifiner-T (DeiT-T with predictor-chosen sparse attention); no Sparsifiner weights or
# dense recipe were released (pretrained=False: pass an official-format or timm DeiT-T checkpoint as
# backbone.pretrained='path'; DeiT weights leave the connectivity predictors at their initialisation).
# The stated plain-ViT recipe (ViTDet's simple feature pyramid on blocks 3 / 5 / 7 / 11, layer-wise lr
# decay 0.7) of ../_base_/mask-rcnn_vit-ti_fpn_ms-crop-3x_coco.py, drop_path_rate 0.1.
_base_ = ["../_base_/mask-rcnn_vit-ti_fpn_ms-crop-3x_coco.py"]

model = dict(backbone=dict(model_name="sparsifiner_deit_t", drop_path_rate=0.1, pretrained=False))

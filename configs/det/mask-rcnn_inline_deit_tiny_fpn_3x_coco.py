# Mask R-CNN 3x, InLine-DeiT-T (official ImageNet weights); InLine publishes no dense recipe or
# result.
# The stated plain-ViT recipe (ViTDet's simple feature pyramid on blocks 3 / 5 / 7 / 11, layer-wise lr
# decay 0.7) of ../_base_/mask-rcnn_vit-ti_fpn_ms-crop-3x_coco.py, drop_path_rate 0.1.
_base_ = ["../_base_/mask-rcnn_vit-ti_fpn_ms-crop-3x_coco.py"]

model = dict(backbone=dict(model_name="inline_deit_tiny", drop_path_rate=0.1))

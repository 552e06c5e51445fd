# Mask R-CNN 3x (mmdet's multi-scale 3x recipe) for a plain ViT-Ti: the 3x fragment with the ViT-Ti
# pyramid and layer-wise lr decay of ./mask-rcnn_vit-ti_fpn_1x_coco.py.
_base_ = ["./mask-rcnn_fpn_ms-crop-3x_coco.py"]

model = dict(
    backbone=dict(out_indices=_base_.vit_ti_out_indices),
    neck=[
        dict(_base_.vit_ti_pyramid, type="mmseg.Feature2Pyramid"),
        dict(type="FPN", in_channels=[192] * 4, out_channels=256, num_outs=5),
    ],
)
optim_wrapper = _base_.vit_layer_decay

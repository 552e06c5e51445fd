# RetinaNet 1x for a plain ViT-Ti (width 192, 12 blocks): ViTDet's simple feature pyramid on blocks
# 3 / 5 / 7 / 11, then FPN from stride 8, and layer-wise lr decay (see ./attnzoo.py), on the RetinaNet
# fragment's AdamW. Configs on it set model.backbone.model_name.
_base_ = ["./retinanet_fpn_1x_coco.py"]

model = dict(
    backbone=dict(out_indices=_base_.vit_ti_out_indices),
    neck=[
        dict(_base_.vit_ti_pyramid, type="mmseg.Feature2Pyramid"),
        dict(
            type="FPN",
            in_channels=[192] * 4,
            out_channels=256,
            start_level=1,
            add_extra_convs="on_input",
            num_outs=5,
        ),
    ],
)
optim_wrapper = _base_.vit_layer_decay

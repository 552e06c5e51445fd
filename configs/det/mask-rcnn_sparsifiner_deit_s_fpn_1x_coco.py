# mask-rcnn_sparsifiner_deit_s_fpn_1x_coco: the Sparsifiner-T Mask R-CNN config with Sparsifiner-S
# (DeiT-S with predictor-chosen sparse attention, width 384): the same plain-ViT recipe (simple feature
# pyramid on blocks 3 / 5 / 7 / 11, FPN, AdamW 1e-4 with layer-wise lr decay 0.7, mmdet's 1x). No
# Sparsifiner weights were released: pass a DeiT-S checkpoint as backbone.pretrained='path/to/ckpt'.
_base_ = ["./mask-rcnn_sparsifiner_deit_t_fpn_1x_coco.py"]

model = dict(
    backbone=dict(model_name="sparsifiner_deit_s"),
    neck=[
        dict(
            type="mmseg.Feature2Pyramid",
            embed_dim=384,
            rescales=[4, 2, 1, 0.5],
            norm_cfg=dict(type="BN", requires_grad=True),
        ),
        dict(type="FPN", in_channels=[384] * 4, out_channels=256, num_outs=5),
    ],
)

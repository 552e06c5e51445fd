# Mask R-CNN + FPN, Sparsifiner-S (DeiT-S with predictor-chosen sparse attention) backbone, COCO 1x.
# No official dense recipe exists and no Sparsifiner weights were released: pass your own checkpoint
# as backbone.pretrained='path/to/ckpt' (an official-format or timm DeiT-S file; DeiT weights leave
# the connectivity predictors at their initialisation). The plain ViT gives stride-16 maps of blocks
# 3 / 5 / 7 / 11; mmseg's Feature2Pyramid rescales them to strides 4-32 for the FPN (ViTDet-style).
# AdamW lr 1e-4, weight decay 0.05 without decay on norms, position embedding and class token,
# drop_path_rate 0.1; mmdet's 1x schedule (steps at epochs 8 and 11).
_base_ = ["mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py"]

custom_imports = dict(imports=["attnzoo.mm"], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type="AttnZooBackbone",
        model_name="sparsifiner_deit_s",
        out_indices=(3, 5, 7, 11),
        pretrained=False,
        frozen_stages=-1,
        norm_eval=False,
        drop_path_rate=0.1,
    ),
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

optim_wrapper = dict(
    _delete_=True,
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=0.0001, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(
        custom_keys={
            "norm": dict(decay_mult=0.0),
            "pos_embed": dict(decay_mult=0.0),
            "cls_token": dict(decay_mult=0.0),
        }
    ),
)

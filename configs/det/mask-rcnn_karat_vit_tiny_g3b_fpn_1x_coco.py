# Mask R-CNN + FPN, Fourier-KArAt ViT-Ti (G = 3, blockwise operators) backbone, COCO 1x.
# The official code and weights are not public: train from scratch or pass your own checkpoint as
# backbone.pretrained='path/to/ckpt'. The operators' token axis is resampled to each input's patch
# grid (see attnzoo/layers/token_tables.py). The plain ViT gives stride-16 maps of blocks 3 / 5 / 7 /
# 11; mmseg's Feature2Pyramid rescales them to strides 4-32 for the FPN (ViTDet-style).
# AdamW lr 1e-4, weight decay 0.05 without decay on norms, position embedding and class token,
# drop_path_rate 0.1; mmdet's 1x schedule (steps at epochs 8 and 11).
_base_ = ["mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py"]

custom_imports = dict(imports=["attnzoo.mm"], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type="AttnZooBackbone",
        model_name="karat_vit_tiny_g3b",
        out_indices=(3, 5, 7, 11),
        pretrained=False,
        frozen_stages=-1,
        norm_eval=False,
        drop_path_rate=0.1,
    ),
    neck=[
        dict(
            type="mmseg.Feature2Pyramid",
            embed_dim=192,
            rescales=[4, 2, 1, 0.5],
            norm_cfg=dict(type="BN", requires_grad=True),
        ),
        dict(type="FPN", in_channels=[192] * 4, out_channels=256, num_outs=5),
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

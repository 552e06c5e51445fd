# Mask R-CNN + FPN, Fourier-KArAt ViT-Ti (G = 3, blockwise operators) backbone, COCO 1x: the plain-ViT
# recipe of mask-rcnn_sparsifiner_deit_s_fpn_1x_coco.py (Feature2Pyramid + FPN on blocks 3 / 5 / 7 /
# 11, AdamW 1e-4, 1x) with this backbone. The official code and weights are not public: train from
# scratch or pass your own checkpoint as backbone.pretrained='path/to/ckpt'. The operators' token
# axis is resampled to each input's patch grid (attnzoo/layers/token_tables.py).
_base_ = ["./mask-rcnn_sparsifiner_deit_s_fpn_1x_coco.py"]

model = dict(
    backbone=dict(model_name="karat_vit_tiny_g3b"),
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

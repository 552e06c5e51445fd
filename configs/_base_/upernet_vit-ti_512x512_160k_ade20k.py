# UperNet 160k for a plain ViT-Ti (width 192, 12 blocks): the simple feature pyramid on blocks
# 3 / 5 / 7 / 11 as the neck (mmseg's BEiT / MAE UperNet set-up) and layer-wise lr decay (see
# ./attnzoo.py), on the UperNet fragment's AdamW. Configs on it set model.backbone.model_name.
_base_ = ["./upernet_512x512_160k_ade20k.py"]

model = dict(
    backbone=dict(out_indices=_base_.vit_ti_out_indices),
    neck=_base_.vit_ti_pyramid,
    decode_head=dict(in_channels=[192] * 4),
    auxiliary_head=dict(in_channels=192),
)
optim_wrapper = _base_.vit_layer_decay

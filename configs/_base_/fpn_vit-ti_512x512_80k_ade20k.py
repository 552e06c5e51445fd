# Semantic FPN 80k for a plain ViT-Ti (width 192, 12 blocks): the simple feature pyramid on blocks
# 3 / 5 / 7 / 11, then FPN, and layer-wise lr decay (see ./attnzoo.py), on the Semantic FPN fragment's
# AdamW. Configs on it set model.backbone.model_name.
_base_ = ["./fpn_512x512_80k_ade20k.py"]

model = dict(
    backbone=dict(out_indices=_base_.vit_ti_out_indices),
    neck=[_base_.vit_ti_pyramid, dict(type="FPN", in_channels=[192] * 4, out_channels=256, num_outs=4)],
)
optim_wrapper = _base_.vit_layer_decay

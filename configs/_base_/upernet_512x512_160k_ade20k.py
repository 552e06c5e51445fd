# UperNet, ADE20K 512x512, 160k iterations, on mmseg's bundled config (4 GPUs x 4 images, the batch of 16
# of the Swin-style 8 x 2 releases; UperNet channels 512, the FCN auxiliary head, weight 0.4, on level 2),
# with an AttnZooBackbone and the Swin-style UperNet recipe: AdamW lr 6e-5, betas (0.9, 0.999), weight
# decay 0.01 with no decay on norm layers, linear warm-up over 1500 iterations from 1e-6, then poly
# (power 1) to 0. Configs on it set the backbone and the heads' in_channels.
_base_ = ["mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py", "./attnzoo.py"]

model = dict(
    pretrained=None,
    backbone=dict(_delete_=True, **_base_.attnzoo_backbone),
    decode_head=dict(in_index=[0, 1, 2, 3], num_classes=150),
    auxiliary_head=dict(in_index=2, num_classes=150),
)

optim_wrapper = dict(
    _delete_=True,
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=0.00006, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={"norm": dict(decay_mult=0.0)}),
)

param_scheduler = [
    dict(type="LinearLR", start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type="PolyLR", eta_min=0.0, power=1.0, by_epoch=False, begin=1500, end=160000),
]

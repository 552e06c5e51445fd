# UperNet, InLine-PVT-T backbone, ADE20K 512x512, 160k iterations, on mmseg's bundled base config
# (4 GPUs x 4 images, as that base).
# InLine (LeapLabTHU/InLine) publishes no segmentation code, configs or results: this is attnzoo's
# set-up, not a reproduction. Fine-tuning choices are those of attnzoo's other UperNet configs (the
# recipe of the Swin-style UperNet releases): AdamW lr 6e-5, betas (0.9, 0.999), weight decay 0.01 with
# no decay on norm layers, linear warm-up over 1500 iterations from 1e-6, then poly (power 1) to 0;
# UperNet channels 512 and the FCN auxiliary head (256 channels, weight 0.4) on stage 3, as mmseg's
# base; the backbone's own ImageNet drop_path_rate (cfgs/inline_pvt_t.yaml: 0.1).
# The backbone gives its raw stage outputs (no dense form, no extra norms; channels 64 / 128 / 320 / 512);
# position embeddings are resampled to each image's size.
# pretrained=True loads the official ImageNet-1k checkpoint (the README's TsinghuaCloud link).
_base_ = ["mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py"]

custom_imports = dict(imports=["attnzoo.mm"], allow_failed_imports=False)

model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type="AttnZooBackbone",
        model_name="inline_pvt_tiny",
        out_indices=(0, 1, 2, 3),
        pretrained=True,
        frozen_stages=-1,
        norm_eval=False,
        drop_path_rate=0.1,
    ),
    decode_head=dict(in_channels=[64, 128, 320, 512], in_index=[0, 1, 2, 3], num_classes=150),
    auxiliary_head=dict(in_channels=320, in_index=2, num_classes=150),
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

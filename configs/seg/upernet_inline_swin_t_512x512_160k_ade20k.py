# UperNet, InLine-Swin-T backbone, ADE20K 512x512, 160k iterations, on mmseg's bundled base config
# (4 GPUs x 4 images; Swin's run used 8 x 2, the same batch of 16).
# InLine (LeapLabTHU/InLine) publishes no detection or segmentation results, configs or recipes. The
# fine-tuning choices are therefore Swin's published mmseg recipe (mmseg's configs/swin/
# swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py): AdamW lr 6e-5, betas
# (0.9, 0.999), weight decay 0.01 with no decay on norms and relative-position bias tables, linear warm-up
# over 1500 iterations from 1e-6 x lr, then poly (power 1) to 0; UperNet channels 512 and the FCN
# auxiliary head (256 channels, weight 0.4) on stage 3, as mmseg's base. drop_path_rate is InLine-Swin-T's
# own ImageNet value (cfgs/inline_swin_t.yaml: 0.2; Swin's mmseg configs use 0.3).
# Backbone: the classifier's stage outputs (no official dense form exists), strides 4 / 8 / 16 / 32,
# channels 96 / 192 / 384 / 768; how windows work at other sizes is documented in
# attnzoo/backbones/inline_swin.py.
# pretrained=True loads the official ImageNet-1k checkpoint (the official README's TsinghuaCloud link).
_base_ = ["mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py"]

custom_imports = dict(imports=["attnzoo.mm"], allow_failed_imports=False)

model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type="AttnZooBackbone",
        model_name="inline_swin_tiny",
        out_indices=(0, 1, 2, 3),
        pretrained=True,
        frozen_stages=-1,
        norm_eval=False,
        drop_path_rate=0.2,
    ),
    decode_head=dict(in_channels=[96, 192, 384, 768], in_index=[0, 1, 2, 3], num_classes=150),
    auxiliary_head=dict(in_channels=384, in_index=2, num_classes=150),
)

optim_wrapper = dict(
    _delete_=True,
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=0.00006, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(
        custom_keys={
            "relative_position_bias_table": dict(decay_mult=0.0),
            "norm": dict(decay_mult=0.0),
        }
    ),
)

param_scheduler = [
    dict(type="LinearLR", start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type="PolyLR", eta_min=0.0, power=1.0, by_epoch=False, begin=1500, end=160000),
]

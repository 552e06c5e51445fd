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
_base_ = ["../_base_/upernet_512x512_160k_ade20k.py"]

model = dict(
    backbone=dict(model_name="inline_swin_tiny", drop_path_rate=0.2),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384),
)

optim_wrapper = dict(paramwise_cfg=dict(custom_keys={"relative_position_bias_table": dict(decay_mult=0.0)}))

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
_base_ = ["../_base_/upernet_512x512_160k_ade20k.py"]

model = dict(
    backbone=dict(model_name="inline_pvt_tiny", drop_path_rate=0.1),
    decode_head=dict(in_channels=[64, 128, 320, 512]),
    auxiliary_head=dict(in_channels=320),
)

# Mask R-CNN + FPN, InLine-Swin-T backbone, COCO 1x (12 epochs), on mmdet's bundled base config
# (8 GPUs x 2 images).
# InLine (LeapLabTHU/InLine) publishes no detection or segmentation results, configs or recipes. The
# fine-tuning choices are therefore Swin's published mmdet recipe (mmdet's
# configs/swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py): AdamW lr 1e-4, betas (0.9, 0.999), weight decay
# 0.05 with no decay on norms and relative-position bias tables, linear warm-up over 1000 iterations from
# 0.001 x lr, steps at epochs 8 and 11. drop_path_rate is InLine-Swin-T's own ImageNet value
# (cfgs/inline_swin_t.yaml: 0.2, which is also Swin-T's mmdet value).
# Backbone: the classifier's stage outputs (no official dense form exists), strides 4 / 8 / 16 / 32,
# channels 96 / 192 / 384 / 768; how windows work at detection sizes (zero padding, shifts, rectangular
# windows) is documented in attnzoo/backbones/inline_swin.py.
# pretrained=True loads the official ImageNet-1k checkpoint (the official README's TsinghuaCloud link).
_base_ = ["../_base_/mask-rcnn_fpn_1x_coco.py"]

model = dict(
    backbone=dict(model_name="inline_swin_tiny", drop_path_rate=0.2),
    neck=dict(in_channels=[96, 192, 384, 768]),
)

param_scheduler = [
    dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type="MultiStepLR", begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={"relative_position_bias_table": dict(decay_mult=0.0)}))

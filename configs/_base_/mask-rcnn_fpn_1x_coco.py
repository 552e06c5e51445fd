# Mask R-CNN + FPN, COCO 1x, on mmdet's bundled config (8 GPUs x 2 images; 12 epochs, steps at 8 and 11,
# 500 warm-up iterations), with an AttnZooBackbone and Swin's mmdet AdamW recipe: lr 1e-4, betas
# (0.9, 0.999), weight decay 0.05 with no decay on norm layers. Configs on it set the backbone and the
# neck widths.
_base_ = ["mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py", "./attnzoo.py"]

model = dict(backbone=dict(_delete_=True, **_base_.attnzoo_backbone))

optim_wrapper = dict(
    _delete_=True,
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=0.0001, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={"norm": dict(decay_mult=0.0)}),
)

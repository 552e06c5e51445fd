# Mask R-CNN + FPN, COCO 3x: the 1x fragment with mmdet's multi-scale 3x recipe (its
# swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py): flip, then one of (a) resize the short side to
# one of 480..800 (step 32, long side <= 1333) or (b) resize to 400 / 500 / 600, crop an absolute
# 384..600 region, resize to one of 480..800; 36 epochs, steps at 27 and 33, 1000 warm-up iterations
# from 1e-3 x lr.
_base_ = ["./mask-rcnn_fpn_1x_coco.py"]

train_scales = [(short, 1333) for short in range(480, 801, 32)]
train_pipeline = [
    dict(type="LoadImageFromFile", backend_args=None),
    dict(type="LoadAnnotations", with_bbox=True, with_mask=True),
    dict(type="RandomFlip", prob=0.5),
    dict(
        type="RandomChoice",
        transforms=[
            [dict(type="RandomChoiceResize", scales=train_scales, keep_ratio=True)],
            [
                dict(
                    type="RandomChoiceResize", scales=[(400, 1333), (500, 1333), (600, 1333)], keep_ratio=True
                ),
                dict(
                    type="RandomCrop",
                    crop_type="absolute_range",
                    crop_size=(384, 600),
                    allow_negative_crop=True,
                ),
                dict(type="RandomChoiceResize", scales=train_scales, keep_ratio=True),
            ],
        ],
    ),
    dict(type="PackDetInputs"),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type="MultiStepLR", begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33], gamma=0.1),
]

# Mask R-CNN + FPN, OverLoCK-T backbone, COCO 3x (36 epochs) with multi-scale + crop training: the 1x
# config with the official mask_rcnn_overlock_t_in1k_fpn_3x_coco.py's changes (OverLoCK repo,
# detection/configs/maskrcnn_overlock/, with its _base_ schedule_3x.py):
# AdamW lr 1e-4 (the 1x config's weight decay 0.05 and no decay on norms), 36 epochs with steps at 27
# and 33, 500 warm-up iterations; the DETR-style augmentation: flip, then one of (a) resize the short
# side to one of 480..800 (step 32, long side <= 1333) or (b) resize to 400 / 500 / 600, crop an
# absolute 384..600 region, resize to one of 480..800 (mmdet 3's RandomChoice + RandomChoiceResize for
# mmdet 2's AutoAugment + Resize(multiscale_mode='value')). Batch 16 (8 GPUs x 2), as the 1x config.
# Target (official detection/readme.md): 49.6 box AP / 43.9 mask AP; official detector checkpoint
# https://github.com/LMMMEng/OverLoCK/releases/download/v1/maskrcnn3x_overlock_tiny_coco.pth
_base_ = ["./mask-rcnn_overlock_t_fpn_1x_coco.py"]

train_scales = [(short, 1333) for short in range(480, 801, 32)]
train_pipeline = [
    dict(type="LoadImageFromFile"),
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
    dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type="MultiStepLR", begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33], gamma=0.1),
]

optim_wrapper = dict(optimizer=dict(lr=0.0001))

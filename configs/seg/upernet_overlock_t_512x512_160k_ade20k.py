# UperNet, OverLoCK-T backbone (the official segmentation form), ADE20K 512x512, 160k iterations, on
# mmseg's bundled base config (4 GPUs x 4 images, as that base; the official run used 8 x 2, the same
# batch of 16). Fine-tuning choices from the official OverLoCK repo (segmentation/configs/overlock/
# upernet_overlock_tiny_ade20k_8xb2.py and its _base_ files):
# AdamW lr 6e-5, betas (0.9, 0.999), weight decay 0.01 with no decay on norm layers,
# drop_path_rate 0.2, linear warm-up over 1500 iterations from 1e-6, then poly (power 1) to 0;
# UperNet channels 512 and the FCN auxiliary head (256 channels, weight 0.4) on level 2, as mmseg's
# base; test images resized to short side 512 (long <= 2048), then bicubic to a multiple of 32;
# the backbone's BatchNorms are SyncBN in distributed runs (sync_bn below).
# dense_form='seg': LayerNorm'd outputs, the layout of the official segmentor's backbone (channels
# 64 / 128 / 384 / 640). pretrained=True loads the official ImageNet-1k checkpoint
# (overlock_t_in1k_224.pth) as the official config does.
# Target (official segmentation/readme.md): 50.3 mIoU (single scale); official segmentor checkpoint
# https://github.com/LMMMEng/OverLoCK/releases/download/v1/upernet_overlock_tiny_ade20k.pth
# (its backbone.* weights load with backbone.pretrained='path/to/it.pth').
_base_ = ["../_base_/upernet_512x512_160k_ade20k.py"]

model = dict(
    backbone=dict(model_name="overlock_t", dense_form="seg", drop_path_rate=0.2),
    decode_head=dict(in_channels=[64, 128, 384, 640]),
    auxiliary_head=dict(in_channels=384),
)

test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="Resize", scale=(2048, 512), keep_ratio=True),
    dict(type="ResizeToMultiple", size_divisor=32, interpolation="bicubic"),
    dict(type="LoadAnnotations", reduce_zero_label=True),  # after the resizes: labels at full size
    dict(type="PackSegInputs"),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# The official backbone converts its BatchNorms to SyncBatchNorm when training is distributed (the heads
# already use SyncBN); mmengine does the same with:
sync_bn = "torch"

# Mask R-CNN + FPN, MALA-S backbone (the official detection form), COCO 3x (36 epochs) with the
# DETR-style multi-scale + crop augmentation, on mmdet's bundled Swin-T 3x config, which has that
# pipeline and schedule (36 epochs, steps at 27 and 33, 1000 warm-up iterations from 1e-3).
# Fine-tuning choices from the official MALA repo (detect/configs/MALA/maskrcnn_s_3x.py): AdamW lr 4e-4,
# betas (0.9, 0.999), weight decay 0.05 with no decay on norm layers, drop_path_rate 0.15; the official
# run used fp16 (add --amp). The official repo ships no MALA-T 3x config.
_base_ = ["mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py"]

custom_imports = dict(imports=["attnzoo.mm"], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type="AttnZooBackbone",
        model_name="mala_s",
        dense_form="det",
        out_indices=(0, 1, 2, 3),
        pretrained=True,
        frozen_stages=-1,
        norm_eval=False,
        drop_path_rate=0.15,
    ),
    neck=dict(in_channels=[64, 128, 320, 512]),
)

optim_wrapper = dict(
    _delete_=True,
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=0.0004, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={"norm": dict(decay_mult=0.0)}),
)

sync_bn = "torch"

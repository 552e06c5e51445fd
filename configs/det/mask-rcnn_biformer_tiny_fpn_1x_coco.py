# Mask R-CNN + FPN, BiFormer-T backbone, COCO 1x (12 epochs), on mmdet's bundled base config.
# Fine-tuning choices from the official BiFormer repo (object_detection/configs/coco/
# maskrcnn.1x.biformer_small.py; it ships no tiny config, so the small one's settings are used):
# AdamW lr 1e-4, betas (0.9, 0.999), weight decay 0.05 with no decay on norm layers,
# drop_path_rate 0.2, n_win=16, steps at epochs 8 and 11 (mmdet's 1x schedule).
_base_ = ["mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py"]

custom_imports = dict(imports=["attnzoo.mm"], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type="AttnZooBackbone",
        model_name="biformer_tiny",
        out_indices=(0, 1, 2, 3),
        pretrained=True,
        frozen_stages=-1,
        norm_eval=False,
        drop_path_rate=0.2,
        n_win=16,
    ),
    neck=dict(in_channels=[64, 128, 256, 512]),
)

optim_wrapper = dict(
    _delete_=True,
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=0.0001, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={"norm": dict(decay_mult=0.0)}),
)

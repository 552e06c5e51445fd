# RetinaNet + FPN, BiFormer-T backbone, COCO 1x (12 epochs), on mmdet's bundled base config.
# Fine-tuning choices from the official BiFormer repo (object_detection/configs/coco/
# retinanet.1x.biformer_small.py; it ships no tiny config, so the small one's settings are used):
# AdamW lr 1e-4, weight decay 1e-4, drop_path_rate 0.2, n_win=16, mmdet's 1x step schedule.
_base_ = ["mmdet::retinanet/retinanet_r50_fpn_1x_coco.py"]

custom_imports = dict(imports=["attnzoo.mm"], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type="AttnZooBackbone",
        model_name="biformer_tiny",
        out_indices=(0, 1, 2, 3),
        pretrained=True,  # the official ImageNet-1k checkpoint, through attnzoo's converter
        frozen_stages=-1,
        norm_eval=False,
        drop_path_rate=0.2,
        n_win=16,
    ),
    neck=dict(in_channels=[64, 128, 256, 512]),
)

optim_wrapper = dict(
    _delete_=True, type="OptimWrapper", optimizer=dict(type="AdamW", lr=0.0001, weight_decay=0.0001)
)

# RetinaNet + FPN, COCO 1x, on mmdet's bundled config (8 GPUs x 2 images; 12 epochs, steps at 8 and 11,
# 500 warm-up iterations), with an AttnZooBackbone and the AdamW recipe of the PVT / BiFormer / MALA
# RetinaNet releases: lr 1e-4, weight decay 1e-4. Configs on it set the backbone and the neck widths.
_base_ = ["mmdet::retinanet/retinanet_r50_fpn_1x_coco.py", "./attnzoo.py"]

model = dict(backbone=dict(_delete_=True, **_base_.attnzoo_backbone))

optim_wrapper = dict(
    _delete_=True, type="OptimWrapper", optimizer=dict(type="AdamW", lr=0.0001, weight_decay=0.0001)
)

# FPN starts at stride 8 (start_level=1): the stride-4 output, and a dense form's norm on it, get no
# gradient, so DDP must be told (the official BiFormer RetinaNet config sets the same).
find_unused_parameters = True

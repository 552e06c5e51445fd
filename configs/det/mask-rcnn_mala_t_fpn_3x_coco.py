# Mask R-CNN + FPN, MALA-T backbone (the official detection form), COCO 3x (mmdet's multi-scale 3x
# recipe, ../_base_/mask-rcnn_fpn_ms-crop-3x_coco.py: 36 epochs, steps at 27 and 33, 1000 warm-up
# iterations from 1e-3). The official repo ships no MALA-T 3x config: this is its S 3x settings
# (detect/configs/MALA/maskrcnn_s_3x.py: AdamW lr 4e-4, betas (0.9, 0.999), weight decay 0.05 with no
# decay on norm layers; fp16, add --amp; SyncBN in the backbone) with MALA-T's 1x drop_path_rate (0.1).
_base_ = ["../_base_/mask-rcnn_fpn_ms-crop-3x_coco.py"]

model = dict(
    backbone=dict(model_name="mala_t", dense_form="det", drop_path_rate=0.1),
    neck=dict(in_channels=[64, 128, 256, 512]),
)

optim_wrapper = dict(optimizer=dict(lr=0.0004))

sync_bn = "torch"

# Mask R-CNN + FPN, BiFormer-T backbone, COCO 1x (12 epochs), on mmdet's bundled base config.
# Fine-tuning choices from the official BiFormer repo (object_detection/configs/coco/
# maskrcnn.1x.biformer_small.py; it ships no tiny config, so the small one's settings are used):
# AdamW lr 1e-4, betas (0.9, 0.999), weight decay 0.05 with no decay on norm layers,
# drop_path_rate 0.2, n_win=16 (the det form's), BatchNorms in eval mode (the official
# BiFormer_mm default, norm_eval=True), steps at epochs 8 and 11 (mmdet's 1x schedule).
_base_ = ["../_base_/mask-rcnn_fpn_1x_coco.py"]

model = dict(
    backbone=dict(model_name="biformer_tiny", dense_form="det", drop_path_rate=0.2, norm_eval=True),
    neck=dict(in_channels=[64, 128, 256, 512]),
)

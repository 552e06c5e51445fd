# Semantic FPN, BiFormer-T backbone, ADE20K 512x512, 80k iterations, on mmseg's bundled Semantic FPN
# base (4 GPUs x 4 images = 16 per step, the official run's 8 x 2).
# Fine-tuning choices from the official BiFormer repo (semantic_segmentation/configs/ade20k/
# sfpn.biformer_small.py, which follows UniFormer's Semantic FPN recipe; it ships no tiny config, so
# the small one's settings are used): AdamW lr 2e-4 (1e-4 x 2 for their 8 GPUs) and weight decay 1e-4,
# drop_path_rate 0.15, n_win=8 (the seg form's), 80k iterations, linear warm-up over 1000 iterations from 0.1
# x lr,
# then cosine annealing to ~0 (min lr ratio 1e-8). The official run used fp16: add --amp.
_base_ = ["../_base_/fpn_512x512_80k_ade20k.py"]

model = dict(
    backbone=dict(model_name="biformer_tiny", dense_form="seg", drop_path_rate=0.15),
    neck=dict(in_channels=[64, 128, 256, 512]),
)

optim_wrapper = dict(optimizer=dict(lr=0.0002))
param_scheduler = [
    dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=1000),
    dict(type="CosineAnnealingLR", eta_min=0.0002 * 1e-8, by_epoch=False, begin=1000, end=80000),
]

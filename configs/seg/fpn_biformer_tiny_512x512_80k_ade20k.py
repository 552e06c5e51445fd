# Semantic FPN, BiFormer-T backbone, ADE20K 512x512, 80k iterations, on mmseg's bundled Semantic FPN
# base (4 GPUs x 4 images = 16 per step, the official run's 8 x 2).
# Fine-tuning choices from the official BiFormer repo (semantic_segmentation/configs/ade20k/
# sfpn.biformer_small.py, which follows UniFormer's Semantic FPN recipe; it ships no tiny config, so
# the small one's settings are used): AdamW lr 2e-4 (1e-4 x 2 for their 8 GPUs) and weight decay 1e-4,
# drop_path_rate 0.15, n_win=8, 80k iterations, linear warm-up over 1000 iterations from 0.1 x lr,
# then cosine annealing to ~0 (min lr ratio 1e-8). The official run used fp16: add --amp.
_base_ = ["mmseg::sem_fpn/fpn_r50_4xb4-160k_ade20k-512x512.py"]

custom_imports = dict(imports=["attnzoo.mm"], allow_failed_imports=False)

max_iters = 80000

model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type="AttnZooBackbone",
        model_name="biformer_tiny",
        out_indices=(0, 1, 2, 3),
        pretrained=True,
        frozen_stages=-1,
        norm_eval=False,
        drop_path_rate=0.15,
        n_win=8,
    ),
    neck=dict(in_channels=[64, 128, 256, 512]),
)

optim_wrapper = dict(
    _delete_=True,
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=0.0002, weight_decay=0.0001),
)

param_scheduler = [
    dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=1000),
    dict(type="CosineAnnealingLR", eta_min=0.0002 * 1e-8, by_epoch=False, begin=1000, end=max_iters),
]
train_cfg = dict(type="IterBasedTrainLoop", max_iters=max_iters, val_interval=8000)
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=8000, max_keep_ckpts=1, save_best="mIoU"))

# Semantic FPN, MALA-T backbone (the official segmentation form), ADE20K 512x512, 80k iterations, on
# mmseg's bundled Semantic FPN base (4 GPUs x 4 images = 16 per step, the official run's 8 x 2).
# Fine-tuning choices from the official MALA repo (segmentation/configs/MALA/FPN_t_1x.py and its
# _base_ schedule_80k.py): AdamW lr 1e-4, weight decay 1e-4, drop_path_rate 0.1, 80k iterations of
# poly decay (power 0.9) to 1e-6, no warm-up; FPN 256 channels and the FPN head (128 channels), as
# mmseg's base; SyncBN in the backbone (sync_bn below).
_base_ = ["mmseg::sem_fpn/fpn_r50_4xb4-160k_ade20k-512x512.py"]

custom_imports = dict(imports=["attnzoo.mm"], allow_failed_imports=False)

max_iters = 80000

model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type="AttnZooBackbone",
        model_name="mala_t",
        dense_form="seg",
        out_indices=(0, 1, 2, 3),
        pretrained=True,
        frozen_stages=-1,
        norm_eval=False,
        drop_path_rate=0.1,
    ),
    neck=dict(in_channels=[64, 128, 256, 512]),
)

optim_wrapper = dict(
    _delete_=True, type="OptimWrapper", optimizer=dict(type="AdamW", lr=0.0001, weight_decay=0.0001)
)

param_scheduler = [dict(type="PolyLR", eta_min=1e-6, power=0.9, by_epoch=False, begin=0, end=max_iters)]
train_cfg = dict(type="IterBasedTrainLoop", max_iters=max_iters, val_interval=8000)
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=8000, max_keep_ckpts=1, save_best="mIoU"))

sync_bn = "torch"

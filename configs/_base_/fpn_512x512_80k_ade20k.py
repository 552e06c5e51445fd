# Semantic FPN, ADE20K 512x512, 80k iterations, on mmseg's bundled Semantic FPN config (4 GPUs x 4 images
# = 16 per step, the 8 x 2 of the PVT-style releases; FPN 256 channels, FPN head 128), with an
# AttnZooBackbone and PVT's Semantic FPN recipe: AdamW lr 1e-4, weight decay 1e-4, 80k iterations of
# poly decay (power 0.9) to 1e-6, no warm-up; checkpoints and validation every 8k iterations.
_base_ = ["mmseg::sem_fpn/fpn_r50_4xb4-160k_ade20k-512x512.py", "./attnzoo.py"]

max_iters = 80000

model = dict(pretrained=None, backbone=dict(_delete_=True, **_base_.attnzoo_backbone))

optim_wrapper = dict(
    _delete_=True, type="OptimWrapper", optimizer=dict(type="AdamW", lr=0.0001, weight_decay=0.0001)
)

param_scheduler = [dict(type="PolyLR", eta_min=1e-6, power=0.9, by_epoch=False, begin=0, end=max_iters)]
train_cfg = dict(type="IterBasedTrainLoop", max_iters=max_iters, val_interval=8000)
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=8000, max_keep_ckpts=1, save_best="mIoU"))

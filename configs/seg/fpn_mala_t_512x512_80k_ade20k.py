# Semantic FPN, MALA-T backbone (the official segmentation form), ADE20K 512x512, 80k iterations, on
# mmseg's bundled Semantic FPN base (4 GPUs x 4 images = 16 per step, the official run's 8 x 2).
# Fine-tuning choices from the official MALA repo (segmentation/configs/MALA/FPN_t_1x.py and its
# _base_ schedule_80k.py): AdamW lr 1e-4, weight decay 1e-4, drop_path_rate 0.1, 80k iterations of
# poly decay (power 0.9) to 1e-6, no warm-up; FPN 256 channels and the FPN head (128 channels), as
# mmseg's base; SyncBN in the backbone (sync_bn below).
_base_ = ["../_base_/fpn_512x512_80k_ade20k.py"]

model = dict(
    backbone=dict(model_name="mala_t", dense_form="seg", drop_path_rate=0.1),
    neck=dict(in_channels=[64, 128, 256, 512]),
)

sync_bn = "torch"

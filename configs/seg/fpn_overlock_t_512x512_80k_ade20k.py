# Semantic FPN, OverLoCK-T backbone (the official segmentation form), ADE20K 512x512, 80k iterations. The
# official repo has no Semantic FPN config or result: the Semantic FPN fragment's recipe (PVT's: AdamW
# lr 1e-4, weight decay 1e-4, poly 0.9) with the official UperNet drop_path_rate (0.2) and SyncBN in the
# backbone when distributed.
_base_ = ["../_base_/fpn_512x512_80k_ade20k.py"]

model = dict(
    backbone=dict(model_name="overlock_t", dense_form="seg", drop_path_rate=0.2),
    neck=dict(in_channels=[64, 128, 384, 640]),
)

sync_bn = "torch"

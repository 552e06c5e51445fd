# RetinaNet + FPN, MALA-T backbone (the official detection form), COCO 1x (12 epochs), on mmdet's
# bundled base config (8 GPUs x 2 images, as the official run).
# Fine-tuning choices from the official MALA repo (detect/configs/MALA/retinanet_t_1x.py): AdamW lr 4e-4,
# weight decay 1e-4, drop_path_rate 0.1, mmdet's 1x step schedule; FPN from stage 2 with extra convs on
# its input (mmdet's RetinaNet base already). The official run used fp16 (add --amp).
_base_ = ["../_base_/retinanet_fpn_1x_coco.py"]

model = dict(
    backbone=dict(model_name="mala_t", dense_form="det", drop_path_rate=0.1),
    neck=dict(in_channels=[64, 128, 256, 512]),
)

optim_wrapper = dict(optimizer=dict(lr=0.0004))

sync_bn = "torch"

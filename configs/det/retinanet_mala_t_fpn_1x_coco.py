# RetinaNet + FPN, MALA-T backbone (the official detection form), COCO 1x (12 epochs), on mmdet's
# bundled base config (8 GPUs x 2 images, as the official run).
# Fine-tuning choices from the official MALA repo (detect/configs/MALA/retinanet_t_1x.py): AdamW lr 4e-4,
# weight decay 1e-4, drop_path_rate 0.1, mmdet's 1x step schedule; FPN from stage 2 with extra convs on
# its input (mmdet's RetinaNet base already). The official run used fp16 (add --amp).
_base_ = ["mmdet::retinanet/retinanet_r50_fpn_1x_coco.py"]

custom_imports = dict(imports=["attnzoo.mm"], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type="AttnZooBackbone",
        model_name="mala_t",
        dense_form="det",
        out_indices=(0, 1, 2, 3),
        pretrained=True,
        frozen_stages=-1,
        norm_eval=False,
        drop_path_rate=0.1,
    ),
    neck=dict(in_channels=[64, 128, 256, 512]),
)

optim_wrapper = dict(
    _delete_=True, type="OptimWrapper", optimizer=dict(type="AdamW", lr=0.0004, weight_decay=0.0001)
)

sync_bn = "torch"

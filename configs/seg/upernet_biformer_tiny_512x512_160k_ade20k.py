# UperNet, BiFormer-T backbone, ADE20K 512x512, 160k iterations, on mmseg's bundled base config
# (4 GPUs x 4 images, as that base; the official run used 8 x 2, the same batch of 16).
# Fine-tuning choices from the official BiFormer repo (semantic_segmentation/configs/ade20k/
# upernet.biformer_small.py; it ships no tiny config, so the small one's settings are used):
# AdamW lr 6e-5, betas (0.9, 0.999), weight decay 0.01 with no decay on norm layers,
# drop_path_rate 0.3, n_win=8, linear warm-up over 1500 iterations from 1e-6, then poly (power 1) to 0.
_base_ = ["mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py"]

custom_imports = dict(imports=["attnzoo.mm"], allow_failed_imports=False)

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
        drop_path_rate=0.3,
        n_win=8,
    ),
    decode_head=dict(in_channels=[64, 128, 256, 512], num_classes=150),
    auxiliary_head=dict(in_channels=256, num_classes=150),
)

optim_wrapper = dict(
    _delete_=True,
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=0.00006, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={"norm": dict(decay_mult=0.0)}),
)

param_scheduler = [
    dict(type="LinearLR", start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type="PolyLR", eta_min=0.0, power=1.0, by_epoch=False, begin=1500, end=160000),
]

# UperNet, BiFormer-T backbone, ADE20K 512x512, 160k iterations, on mmseg's bundled base config
# (4 GPUs x 4 images, as that base; the official run used 8 x 2, the same batch of 16).
# Fine-tuning choices from the official BiFormer repo (semantic_segmentation/configs/ade20k/
# upernet.biformer_small.py; it ships no tiny config, so the small one's settings are used):
# AdamW lr 6e-5, betas (0.9, 0.999), weight decay 0.01 with no decay on norm layers,
# drop_path_rate 0.3, n_win=8 (the seg form's), linear warm-up over 1500 iterations from 1e-6, then poly
# (power 1) to 0.
_base_ = ["../_base_/upernet_512x512_160k_ade20k.py"]

model = dict(
    backbone=dict(model_name="biformer_tiny", dense_form="seg", drop_path_rate=0.3),
    decode_head=dict(in_channels=[64, 128, 256, 512]),
    auxiliary_head=dict(in_channels=256),
)

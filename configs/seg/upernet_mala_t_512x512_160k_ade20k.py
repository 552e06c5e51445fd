# UperNet, MALA-T backbone (the official segmentation form), ADE20K 512x512, 160k iterations, on mmseg's
# bundled base config (4 GPUs x 4 images, as that base; the official run used 8 x 2, the same batch of 16).
# Fine-tuning choices from the official MALA repo (segmentation/configs/MALA/Uper_t_2x.py and its
# _base_ files): AdamW lr 6e-5, betas (0.9, 0.999), weight decay 0.01 with no decay on norm layers,
# drop_path_rate 0.1, linear warm-up over 1500 iterations from 1e-6, then poly (power 1) to 0;
# UperNet channels 512 and the FCN auxiliary head (256 channels, weight 0.4) on stage 3, as mmseg's
# base; the official run used fp16 (add --amp) and SyncBN in the backbone (sync_bn below).
# dense_form='seg': a LayerNorm on each stage output, the layout of the official segmentor's backbone
# (segmentation/mmseg/models/backbones/MALA.py; channels 64 / 128 / 256 / 512).
_base_ = ["../_base_/upernet_512x512_160k_ade20k.py"]

model = dict(
    backbone=dict(model_name="mala_t", dense_form="seg", drop_path_rate=0.1),
    decode_head=dict(in_channels=[64, 128, 256, 512]),
    auxiliary_head=dict(in_channels=256),
)

sync_bn = "torch"

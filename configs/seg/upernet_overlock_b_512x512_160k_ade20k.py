# upernet_overlock_b_512x512_160k_ade20k: the OverLoCK-T config with the base backbone and the official
# upernet_overlock_base_ade20k_8xb2.py's drop_path_rate (0.5); its other settings are the T one's.
# Target (official segmentation/readme.md): 51.7 mIoU; official segmentor checkpoint
# https://github.com/LMMMEng/OverLoCK/releases/download/v1/upernet_overlock_base_ade20k.pth
_base_ = ["./upernet_overlock_t_512x512_160k_ade20k.py"]

model = dict(
    backbone=dict(model_name="overlock_b", drop_path_rate=0.5),
    decode_head=dict(in_channels=[80, 160, 528, 720]),
    auxiliary_head=dict(in_channels=528),
)

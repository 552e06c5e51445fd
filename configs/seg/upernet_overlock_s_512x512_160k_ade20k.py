# upernet_overlock_s_512x512_160k_ade20k: the OverLoCK-T config with the small backbone and the official
# upernet_overlock_small_ade20k_8xb2.py's drop_path_rate (0.3); its other settings are the T one's.
# Target (official segmentation/readme.md): 51.3 mIoU; official segmentor checkpoint
# https://github.com/LMMMEng/OverLoCK/releases/download/v1/upernet_overlock_small_ade20k.pth
_base_ = ["./upernet_overlock_t_512x512_160k_ade20k.py"]

model = dict(
    backbone=dict(model_name="overlock_s", drop_path_rate=0.3),
    decode_head=dict(in_channels=[64, 128, 448, 640]),
    auxiliary_head=dict(in_channels=448),
)

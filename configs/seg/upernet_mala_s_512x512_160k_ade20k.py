# upernet_mala_s_512x512_160k_ade20k: the MALA-T UperNet config with the MALA-S backbone and the
# official Uper_s_2x.py's drop_path_rate (0.15); its other settings are the T one's.
_base_ = ["./upernet_mala_t_512x512_160k_ade20k.py"]

model = dict(
    backbone=dict(model_name="mala_s", drop_path_rate=0.15),
    decode_head=dict(in_channels=[64, 128, 320, 512]),
    auxiliary_head=dict(in_channels=320),
)

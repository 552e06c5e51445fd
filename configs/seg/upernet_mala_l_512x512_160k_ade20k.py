# upernet_mala_l_512x512_160k_ade20k: the MALA-T UperNet config with the MALA-L backbone and the
# official Uper_l_2x.py's drop_path_rate (0.55); its other settings are the T one's.
_base_ = ["./upernet_mala_t_512x512_160k_ade20k.py"]

model = dict(
    backbone=dict(model_name="mala_l", drop_path_rate=0.55),
    decode_head=dict(in_channels=[96, 192, 448, 640]),
    auxiliary_head=dict(in_channels=448),
)

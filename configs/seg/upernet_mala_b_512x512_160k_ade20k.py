# upernet_mala_b_512x512_160k_ade20k: the MALA-T UperNet config with the MALA-B backbone and the
# official Uper_b_2x.py's drop_path_rate (0.4); its other settings are the T one's.
_base_ = ["./upernet_mala_t_512x512_160k_ade20k.py"]

model = dict(
    backbone=dict(model_name="mala_b", drop_path_rate=0.4),
    decode_head=dict(in_channels=[96, 192, 384, 512]),
    auxiliary_head=dict(in_channels=384),
)

# fpn_mala_l_512x512_80k_ade20k: the MALA-T Semantic FPN config with the MALA-L backbone and the
# official FPN_l_1x.py's drop_path_rate (0.55); its other settings are the T one's.
_base_ = ["./fpn_mala_t_512x512_80k_ade20k.py"]

model = dict(
    backbone=dict(model_name="mala_l", drop_path_rate=0.55), neck=dict(in_channels=[96, 192, 448, 640])
)

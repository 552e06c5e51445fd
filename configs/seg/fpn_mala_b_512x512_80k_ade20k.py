# fpn_mala_b_512x512_80k_ade20k: the MALA-T Semantic FPN config with the MALA-B backbone and the
# official FPN_b_1x.py's drop_path_rate (0.4); its other settings are the T one's.
_base_ = ["./fpn_mala_t_512x512_80k_ade20k.py"]

model = dict(
    backbone=dict(model_name="mala_b", drop_path_rate=0.4), neck=dict(in_channels=[96, 192, 384, 512])
)

# fpn_mala_s_512x512_80k_ade20k: the MALA-T Semantic FPN config with the MALA-S backbone and the
# official FPN_s_1x.py's drop_path_rate (0.15); its other settings are the T one's.
_base_ = ["./fpn_mala_t_512x512_80k_ade20k.py"]

model = dict(
    backbone=dict(model_name="mala_s", drop_path_rate=0.15), neck=dict(in_channels=[64, 128, 320, 512])
)

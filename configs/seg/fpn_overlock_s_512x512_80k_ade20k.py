# fpn_overlock_s_512x512_80k_ade20k: the OverLoCK-T Semantic FPN config with the small backbone and
# the official UperNet drop_path_rate (0.3). No official Semantic FPN result.
_base_ = ["./fpn_overlock_t_512x512_80k_ade20k.py"]

model = dict(
    backbone=dict(model_name="overlock_s", drop_path_rate=0.3), neck=dict(in_channels=[64, 128, 448, 640])
)

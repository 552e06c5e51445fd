# fpn_overlock_b_512x512_80k_ade20k: the OverLoCK-T Semantic FPN config with the base backbone and
# the official UperNet drop_path_rate (0.5). No official Semantic FPN result.
_base_ = ["./fpn_overlock_t_512x512_80k_ade20k.py"]

model = dict(
    backbone=dict(model_name="overlock_b", drop_path_rate=0.5), neck=dict(in_channels=[80, 160, 528, 720])
)

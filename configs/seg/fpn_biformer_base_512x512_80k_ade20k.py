# fpn_biformer_base_512x512_80k_ade20k: the BiFormer-T config with the base backbone
# and the official sfpn.biformer_base.py's drop_path_rate (0.3).
_base_ = ["./fpn_biformer_tiny_512x512_80k_ade20k.py"]

model = dict(
    backbone=dict(model_name="biformer_base", drop_path_rate=0.3), neck=dict(in_channels=[96, 192, 384, 768])
)

# upernet_biformer_base_512x512_160k_ade20k: the BiFormer-T config with the base backbone
# and the official upernet.biformer_base.py's drop_path_rate (0.4).
_base_ = ["./upernet_biformer_tiny_512x512_160k_ade20k.py"]

model = dict(
    backbone=dict(model_name="biformer_base", drop_path_rate=0.4),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384),
)

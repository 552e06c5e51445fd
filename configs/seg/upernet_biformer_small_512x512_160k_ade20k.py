# upernet_biformer_small_512x512_160k_ade20k: the BiFormer-T config with the small backbone
# (its settings already are the official upernet.biformer_small.py's).
_base_ = ["./upernet_biformer_tiny_512x512_160k_ade20k.py"]

model = dict(backbone=dict(model_name="biformer_small"))

# UperNet, ADE20K 512x512, 160k iterations, InLine-CSwin-T backbone (stage outputs, strides 4-32, channels 64
# / 128 / 256 / 512).
# InLine (LeapLabTHU/InLine) publishes no detection / segmentation code, configs or results: this is
# attnzoo's set-up, not a reproduction: the recipe of ../_base_/upernet_512x512_160k_ade20k.py
# with drop_path_rate 0.1 (attnzoo's choice).
_base_ = ["../_base_/upernet_512x512_160k_ade20k.py"]

model = dict(
    backbone=dict(model_name="inline_cswin_tiny", drop_path_rate=0.1),
    decode_head=dict(in_channels=[64, 128, 256, 512]),
    auxiliary_head=dict(in_channels=256),
)

# upernet_inline_swin_b_512x512_160k_ade20k: the InLine-Swin-T UperNet config with the InLine-Swin-B
# backbone (channels 128 / 256 / 512 / 1024) and its own ImageNet drop_path_rate (cfgs/inline_swin_b.yaml:
# 0.5); the other settings (Swin's mmseg recipe) are the T one's.
_base_ = ["./upernet_inline_swin_t_512x512_160k_ade20k.py"]

model = dict(
    backbone=dict(model_name="inline_swin_base", drop_path_rate=0.5),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512),
)

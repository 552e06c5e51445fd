# upernet_inline_swin_s_512x512_160k_ade20k: the InLine-Swin-T UperNet config with the InLine-Swin-S
# backbone and its own ImageNet drop_path_rate (cfgs/inline_swin_s.yaml: 0.3); same widths, so the heads
# are unchanged; the other settings (Swin's mmseg recipe) are the T one's.
_base_ = ["./upernet_inline_swin_t_512x512_160k_ade20k.py"]

model = dict(backbone=dict(model_name="inline_swin_small", drop_path_rate=0.3))

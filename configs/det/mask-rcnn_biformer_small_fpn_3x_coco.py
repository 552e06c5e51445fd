# mask-rcnn_biformer_small_fpn_3x_coco: the BiFormer-T 3x config with the small backbone (the official
# 1x drop_path_rate, 0.2, is the T one's). No official 3x result.
_base_ = ["./mask-rcnn_biformer_tiny_fpn_3x_coco.py"]

model = dict(backbone=dict(model_name="biformer_small"))

# mask-rcnn_biformer_small_fpn_1x_coco: the BiFormer-T config with the small backbone
# (its settings already are the official maskrcnn.1x.biformer_small.py's).
_base_ = ["./mask-rcnn_biformer_tiny_fpn_1x_coco.py"]

model = dict(backbone=dict(model_name="biformer_small"))

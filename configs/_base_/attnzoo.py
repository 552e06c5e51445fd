# Parts every attnzoo config shares, referenced from the task fragments next to this file.
custom_imports = dict(imports=["attnzoo.mm"], allow_failed_imports=False)

# The backbone in place of ResNet: stage outputs 0-3 (strides 4-32), nothing frozen, the family's
# official ImageNet weights. Configs set model_name (+ dense_form, drop_path_rate) and the neck widths.
attnzoo_backbone = dict(
    type="AttnZooBackbone", out_indices=(0, 1, 2, 3), pretrained=True, frozen_stages=-1, norm_eval=False
)

# Plain ViTs (stride 16 only), ViTDet's recipe: blocks 3 / 5 / 7 / 11 rescaled to strides 4-32 by a
# simple feature pyramid (mmseg's Feature2Pyramid: 4x / 2x deconvs, identity, 2x max-pool), then the
# task's neck; layer-wise lr decay 0.7 (ViTDet's ViT-B value) through attnzoo's constructor, which reads
# each parameter's block from the family record; no weight decay on norms, position embedding, class token.
vit_ti_out_indices = (3, 5, 7, 11)
vit_ti_pyramid = dict(
    type="Feature2Pyramid",
    embed_dim=192,
    rescales=[4, 2, 1, 0.5],
    norm_cfg=dict(type="BN", requires_grad=True),
)
vit_layer_decay = dict(
    constructor="LayerDecayOptimWrapperConstructor",
    paramwise_cfg=dict(
        decay_rate=0.7,
        custom_keys={
            "norm": dict(decay_mult=0.0),
            "pos_embed": dict(decay_mult=0.0),
            "cls_token": dict(decay_mult=0.0),
        },
    ),
)

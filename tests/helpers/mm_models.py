"""Narrow OpenMMLab heads for tests that build a detector around a real backbone: the heads' CPU time,
not the backbone's, dominates a Mask R-CNN at full width."""

from __future__ import annotations

from mmengine.config import ConfigDict


def narrow_mask_rcnn(
    model: ConfigDict, width: int, fc_width: int | None = None, num_classes: int | None = None
) -> ConfigDict:
    """Set a Mask R-CNN model config's neck output, RPN, RoI extractors and heads to ``width`` channels
    (the box head's fc layers to ``fc_width``, default ``width``); ``num_classes``: also the class count,
    with one mask conv. The neck's ``in_channels`` (what the backbone feeds) is left as it is."""
    model.neck.update(out_channels=width)
    model.rpn_head.update(in_channels=width, feat_channels=width)
    roi = model.roi_head
    roi.bbox_roi_extractor.update(out_channels=width)
    roi.mask_roi_extractor.update(out_channels=width)
    roi.bbox_head.update(in_channels=width, fc_out_channels=fc_width or width)
    roi.mask_head.update(in_channels=width, conv_out_channels=width)
    if num_classes is not None:
        roi.bbox_head.update(num_classes=num_classes)
        roi.mask_head.update(num_classes=num_classes, num_convs=1)
    return model

"""The OpenMMLab stack that `make test` installs (tools/install_openmmlab.sh) imports and runs its ops."""

import torch


def test_mmcv_ops_compiled_and_working():
    from mmcv.ops import nms

    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [50.0, 50.0, 60.0, 60.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    dets, keep = nms(boxes, scores, iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
    assert dets.shape == (2, 5)


def test_mmdet_and_mmseg_versions():
    import mmcv
    import mmdet
    import mmengine
    import mmseg

    assert mmcv.__version__ == "2.1.0"
    assert mmdet.__version__ == "3.3.0"
    assert mmseg.__version__ == "1.2.2"
    assert mmengine.__version__ == "0.10.7"

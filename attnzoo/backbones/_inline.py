"""What the four InLine families (InLine-DeiT, -PVT, -Swin, -CSwin) share.

One paper and one official repository publish all four architectures, and attnzoo keeps one family
record per architecture; the paper fields, the citation and the way the weights are released are
written here once, so each family module declares only its own models and numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from attnzoo.backbones._family import Source, Weights

__all__ = ["INLINE_PAPER", "inline_weights"]

_CITATION = """@inproceedings{han2024inline,
  title={Bridging the Divide: Reconsidering Softmax and Linear Attention},
  author={Han, Dongchen and Pu, Yifan and Xia, Zhuofan and Han, Yizeng and Pan, Xuran and Li, Xiu
    and Lu, Jiwen and Song, Shiji and Huang, Gao},
  booktitle={NeurIPS},
  year={2024}
}"""

# The Family fields every InLine family has in common: splat into Family(...).
INLINE_PAPER: Mapping[str, str] = MappingProxyType(
    {
        "paper": "Bridging the Divide: Reconsidering Softmax and Linear Attention",
        "paper_ids": "arXiv:2412.06590",
        "repo": "https://github.com/LeapLabTHU/InLine",
        # The official repository carries no licence file: its weights are linked, never re-hosted.
        "license": "unknown",
        "citation": _CITATION,
    }
)

_WEIGHTS_NOTE = (
    "weights: the official README's TsinghuaCloud link (a Seafile share link; '?dl=1' downloads the file "
    "itself); the repository has no licence file, so attnzoo links them and never re-hosts them"
)


def inline_weights(
    model: str,
    share: str,
    top1: float,
    params_m: float,
    gflops: float,
    cfg: Mapping[str, Any] | None = None,
    notes: tuple[str, ...] = (),
) -> Weights:
    """The ``in1k`` record of one InLine model, from its TsinghuaCloud share id (``/f/<share>/``) and
    the official README's top-1, parameter count and GFLOPs."""
    return Weights(
        model,
        "in1k",
        (Source(url=f"https://cloud.tsinghua.edu.cn/f/{share}/?dl=1"),),
        top1=top1,
        params_m=params_m,
        gflops=gflops,
        cfg=cfg or {},
        notes=(_WEIGHTS_NOTE, *notes),
    )

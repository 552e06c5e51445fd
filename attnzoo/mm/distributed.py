"""Distributed training of CPU models (gloo), e.g. the test suite's 2-process run.

mmengine 0.10's runner always passes ``device_ids=[LOCAL_RANK]`` to its DDP wrapper, which torch refuses
for a module on the CPU. :class:`CpuDistributedDataParallel` drops them there; tools/train.py selects
it (and the gloo backend) when a distributed launch finds no GPU.
"""

from __future__ import annotations

from typing import Any

from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS
from torch import nn


@MODEL_WRAPPERS.register_module(force=True)
class CpuDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` that also wraps CPU modules (without ``device_ids``)."""

    def __init__(self, module: nn.Module, **kwargs: Any) -> None:
        if all(p.device.type == "cpu" for p in module.parameters()):
            kwargs.pop("device_ids", None)
            kwargs.pop("output_device", None)
        super().__init__(module=module, **kwargs)

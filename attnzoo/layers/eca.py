"""Efficient channel attention (ECA-Net) that also takes an empty batch (ECA-HaloNeXt uses it)."""

from __future__ import annotations

import torch
from timm.layers import EcaModule as TimmEcaModule

__all__ = ["EcaModule"]


class EcaModule(TimmEcaModule):
    """timm's ``EcaModule`` (same constructor and parameters: timm's checkpoints load unchanged), with
    the pooled channels shaped by ``unsqueeze`` / ``transpose``: timm's ``view(B, 1, -1)`` cannot size
    the channel axis of a batch of 0 images."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x.mean((2, 3)).unsqueeze(1))  # [B, 1, C]: the channels as one 1-d signal
        if self.conv2 is not None:
            y = self.conv2(self.act(y))
        return x * self.gate(y).transpose(1, 2).unsqueeze(-1)  # gates [B, C, 1, 1]

"""Gate `spatial`, lab-log entry 198: CBAM's spatial attention as the log writes it."""

from __future__ import annotations

import torch
from torch import nn

from ccreid.core.registry import gate


@gate("spatial")
class SpatialGate(nn.Module):
    """Entry 198, CBAM's spatial attention without its BN: one weight per position, computed by a
    7x7 conv over the channel-wise [mean, max] maps. `channels` / `reduction` are unused."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 1, 7, padding=3, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        descriptors = torch.cat([x.mean(dim=1, keepdim=True), x.max(dim=1, keepdim=True).values], dim=1)
        return self.sigmoid(self.conv1(descriptors)) * x

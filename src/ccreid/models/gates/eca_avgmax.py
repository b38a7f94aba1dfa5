"""Gate `eca_avgmax`, lab-log entry 200: an ECA-style 1-D conv over [avg, max] descriptors."""

from __future__ import annotations

import torch
from torch import nn

from ccreid.core.registry import gate


@gate("eca_avgmax")
class EcaGate(nn.Module):
    """Entry 200, ECA-style: a 1-D conv (kernel 5, with bias) slides along the channel axis over
    the two rows [avg, max] of pooled descriptors. `channels` / `reduction` are unused."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.conv1 = nn.Conv1d(2, 1, 5, 1, 2)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels = x.shape[:2]
        descriptors = torch.stack([x.mean((2, 3)), x.amax((2, 3))], dim=1)  # B x 2 x C
        return self.sigmoid(self.conv1(descriptors)).view(batch, channels, 1, 1) * x

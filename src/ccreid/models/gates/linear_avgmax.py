"""Gate `linear_avgmax`, lab-log entry 201: a single 1x1 conv (2C -> C, with bias) over [avg, max] pooling, no bottleneck."""

from __future__ import annotations

from torch import nn

from ccreid.core.registry import gate
from ccreid.models.gates.pooled import PooledChannelGate


@gate("linear_avgmax")
def linear_avgmax(channels: int, reduction: int = 16) -> PooledChannelGate:
    """201: a single 1x1 conv (2C -> C, with bias) over [avg, max] pooling, no bottleneck."""
    return PooledChannelGate(nn.Sequential(nn.Conv2d(2 * channels, channels, 1)), with_max=True)

"""Gate `conv7_avgmax`, lab-log entry 199: one 7x7 conv (2C -> C, no bias) over [avg, max] pooling."""

from __future__ import annotations

from torch import nn

from ccreid.core.registry import gate
from ccreid.models.gates.pooled import PooledChannelGate


@gate("conv7_avgmax")
def conv7_avgmax(channels: int, reduction: int = 16) -> PooledChannelGate:
    """199: one 7x7 conv (2C -> C, no bias) over [avg, max] pooling.

    On the 1x1 pooled map with padding 3 only the kernel's centre tap ever sees data, so this is a
    linear 2C -> C map carrying 49x the parameters it uses (kept: the log's definition)."""
    return PooledChannelGate(nn.Conv2d(2 * channels, channels, 7, padding=3, bias=False), with_max=True)

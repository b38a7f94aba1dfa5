"""Gate `se_avgmax`, lab-log entry 197: squeeze-excitation over concatenated [avg, max] pooling (the log cites MFENet)."""

from __future__ import annotations

from ccreid.core.registry import gate
from ccreid.models.gates.pooled import PooledChannelGate, excitation


@gate("se_avgmax")
def se_avgmax(channels: int, reduction: int = 16) -> PooledChannelGate:
    """197: squeeze-excitation over concatenated [avg, max] pooling (the log cites MFENet)."""
    return PooledChannelGate(excitation(2 * channels, channels // reduction, channels), with_max=True)

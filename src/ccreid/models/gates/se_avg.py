"""Gate `se_avg`, lab-log entry 196: squeeze-excitation over average pooling -- OSNet's own channel gate."""

from __future__ import annotations

from ccreid.core.registry import gate
from ccreid.models.gates.pooled import PooledChannelGate, excitation


@gate("se_avg")
def se_avg(channels: int, reduction: int = 16) -> PooledChannelGate:
    """196: squeeze-excitation over average pooling -- OSNet's own channel gate."""
    return PooledChannelGate(excitation(channels, channels // reduction, channels), with_max=False)

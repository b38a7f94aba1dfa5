"""Gate `se_bn_avgmax`, lab-log entry 203: 197 with BN in the bottleneck and bias-free convs."""

from __future__ import annotations

from ccreid.core.registry import gate
from ccreid.models.gates.pooled import PooledChannelGate, excitation


@gate("se_bn_avgmax")
def se_bn_avgmax(channels: int, reduction: int = 16) -> PooledChannelGate:
    """203: 197 with BN in the bottleneck and bias-free convs."""
    return PooledChannelGate(
        excitation(2 * channels, channels // reduction, channels, batch_norm=True, bias=False), with_max=True
    )

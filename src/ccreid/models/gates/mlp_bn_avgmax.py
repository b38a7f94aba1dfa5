"""Gate `mlp_bn_avgmax`, lab-log entry 202: 2C -> C -> C MLP with BN, biased convs, over [avg, max] pooling (no reduction)."""

from __future__ import annotations

from ccreid.core.registry import gate
from ccreid.models.gates.pooled import PooledChannelGate, excitation


@gate("mlp_bn_avgmax")
def mlp_bn_avgmax(channels: int, reduction: int = 16) -> PooledChannelGate:
    """202: 2C -> C -> C MLP with BN, biased convs, over [avg, max] pooling (no reduction)."""
    return PooledChannelGate(excitation(2 * channels, channels, channels, batch_norm=True), with_max=True)

"""The eight attention gates of the lab log (entries 196-203), one registry entry each.

Each entry of the log defines a `ChannelAttention(channel, reduction=16)` class returning
`gate * x`; the log's code is the definition, even where it departs from the paper it cites.
The modules below compute exactly the same functions and keep the log's submodule names
(`avgpool`, `maxpool`, `se`, `conv1`, `sigmoid`), so a state_dict of the log's class loads into
them strictly (tests/test_gates.py checks this against the log itself).

Six of the eight share one shape -- pool to one value per channel, map through `se`, sigmoid --
and differ only in the pooling and the `se` stack: they are one class, `PooledChannelGate`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ccreid.core.errors import CCReIDError, registered


class PooledChannelGate(nn.Module):
    """sigmoid(se(pool(x))) * x, where pool is global avg, or [avg, max] concatenated on channels.

    `se` maps the pooled (channels or 2*channels) vector to one weight per channel.
    """

    def __init__(self, se: nn.Module, with_max: bool):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.maxpool = nn.AdaptiveMaxPool2d(1) if with_max else None
        self.se = se
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.avgpool(x)
        if self.maxpool is not None:
            pooled = torch.cat([pooled, self.maxpool(x)], dim=1)
        return self.sigmoid(self.se(pooled)) * x


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


def _excitation(
    in_channels: int, hidden: int, out_channels: int, *, batch_norm: bool = False, bias: bool = True
) -> nn.Sequential:
    """1x1 conv -> [BN] -> ReLU -> 1x1 conv, the `se` stack of entries 196, 197, 202 and 203."""
    if hidden < 1:
        raise CCReIDError(
            f"model.multiscale.reduction is too large: a gate over {out_channels} channels "
            f"would have {hidden} hidden channels; use a reduction of at most {out_channels}"
        )
    layers: list[nn.Module] = [nn.Conv2d(in_channels, hidden, 1, bias=bias)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(hidden))
    layers += [nn.ReLU(), nn.Conv2d(hidden, out_channels, 1, bias=bias)]
    return nn.Sequential(*layers)


def se_avg(channels: int, reduction: int = 16) -> PooledChannelGate:
    """196: squeeze-excitation over average pooling -- OSNet's own channel gate."""
    return PooledChannelGate(_excitation(channels, channels // reduction, channels), with_max=False)


def se_avgmax(channels: int, reduction: int = 16) -> PooledChannelGate:
    """197: squeeze-excitation over concatenated [avg, max] pooling."""
    return PooledChannelGate(_excitation(2 * channels, channels // reduction, channels), with_max=True)


def conv7_avgmax(channels: int, reduction: int = 16) -> PooledChannelGate:
    """199: one 7x7 conv (2C -> C, no bias) over [avg, max] pooling.

    On the 1x1 pooled map with padding 3 only the kernel's centre tap ever sees data, so this is a
    linear 2C -> C map carrying 49x the parameters it uses (kept: the log's definition).
    """
    return PooledChannelGate(nn.Conv2d(2 * channels, channels, 7, padding=3, bias=False), with_max=True)


def linear_avgmax(channels: int, reduction: int = 16) -> PooledChannelGate:
    """201: a single 1x1 conv (2C -> C, with bias) over [avg, max] pooling, no bottleneck."""
    return PooledChannelGate(nn.Sequential(nn.Conv2d(2 * channels, channels, 1)), with_max=True)


def mlp_bn_avgmax(channels: int, reduction: int = 16) -> PooledChannelGate:
    """202: 2C -> C -> C MLP with BN, biased convs, over [avg, max] pooling (no reduction)."""
    se = _excitation(2 * channels, channels, channels, batch_norm=True)
    return PooledChannelGate(se, with_max=True)


def se_bn_avgmax(channels: int, reduction: int = 16) -> PooledChannelGate:
    """203: 197 with BN in the bottleneck and bias-free convs."""
    se = _excitation(2 * channels, channels // reduction, channels, batch_norm=True, bias=False)
    return PooledChannelGate(se, with_max=True)


# params.yaml `model.multiscale.gate` -> builder(channels, reduction=16), in lab-log order.
GATES: dict[str, Callable[..., nn.Module]] = {
    "se_avg": se_avg,  # 196
    "se_avgmax": se_avgmax,  # 197
    "spatial": SpatialGate,  # 198
    "conv7_avgmax": conv7_avgmax,  # 199
    "eca_avgmax": EcaGate,  # 200
    "linear_avgmax": linear_avgmax,  # 201
    "mlp_bn_avgmax": mlp_bn_avgmax,  # 202
    "se_bn_avgmax": se_bn_avgmax,  # 203
}


def build_gate(name: str, channels: int, reduction: int = 16) -> nn.Module:
    """GATES[name](channels, reduction), with an error naming the valid gates."""
    return registered(GATES, name, "model.multiscale.gate", "gate")(channels, reduction=reduction)

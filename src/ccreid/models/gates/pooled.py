"""The shape six of the lab log's eight gates share: pool to one value per channel, map the pooled
vector through `se`, sigmoid, rescale the input. They differ only in the pooling and the `se` stack."""

from __future__ import annotations

import torch
from torch import nn

from ccreid.core.errors import CCReIDError


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


def excitation(
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

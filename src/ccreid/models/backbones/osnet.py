"""OSNet x1.0 and OSNet-AIN x1.0 (Zhou et al., ICCV 2019 and arXiv 1910.06827), `model.backbone`
`osnet_x1_0` and `osnet_ain_x1_0`.

Layers carry torchreid's names (`osnet.py` and `osnet_ain.py`), so torchreid's published
ImageNet files load directly; the 512-d `fc` embedding layer and the `classifier` of those files
are not part of the backbone (our re-id head replaces them). OSNet keeps its published output
stride 16 (conv4 and conv5 do not downsample), so `model.last_stride` does not apply to it.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence

import torch
from torch import nn

from ccreid.core.registry import backbone
from ccreid.models.base import Backbone
from ccreid.models.osnet_layers import Conv1x1, ConvLayer, OSBlock, OSBlockAIN, init_osnet_weights, transition

CHANNELS_X1_0 = (64, 256, 384, 512)


class OSNetBackbone(Backbone):
    """Stem conv1 + maxpool, stages conv2..conv4, 1x1 conv5. Output stride 16, no classifier."""

    # Built by the subclasses; declared for the shared forward.
    conv1: nn.Module
    maxpool: nn.Module
    conv4: nn.Sequential
    conv5: nn.Module

    @abstractmethod
    def stages_to_conv3(self, x: torch.Tensor) -> torch.Tensor: ...

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (conv4 map, conv5 map); both are 512-channel at x1.0."""
        mid_map = self.conv4(self.stages_to_conv3(self.maxpool(self.conv1(x))))
        return mid_map, self.conv5(mid_map)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[1]


class OSNet(OSNetBackbone):
    """osnet_x1_0: two OSBlocks per stage; the transitions are the last element of conv2 / conv3."""

    def __init__(self, channels: Sequence[int] = CHANNELS_X1_0):
        super().__init__()
        self.mid_channels = self.out_channels = channels[3]
        self.conv1 = ConvLayer(3, channels[0], 7, stride=2, padding=3)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.conv2 = nn.Sequential(
            OSBlock(channels[0], channels[1]), OSBlock(channels[1], channels[1]), transition(channels[1])
        )
        self.conv3 = nn.Sequential(
            OSBlock(channels[1], channels[2]), OSBlock(channels[2], channels[2]), transition(channels[2])
        )
        self.conv4 = nn.Sequential(OSBlock(channels[2], channels[3]), OSBlock(channels[3], channels[3]))
        self.conv5 = Conv1x1(channels[3], channels[3])
        init_osnet_weights(self)

    def stages_to_conv3(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.conv2(x))


class OSNetAIN(OSNetBackbone):
    """osnet_ain_x1_0: IN in the stem and, as the AIN search found, inside the residual of
    blocks conv2.0, conv2.1, conv3.1 and conv4.0; transitions are separate (`pool2`, `pool3`)."""

    def __init__(self, channels: Sequence[int] = CHANNELS_X1_0):
        super().__init__()
        self.mid_channels = self.out_channels = channels[3]
        self.conv1 = ConvLayer(3, channels[0], 7, stride=2, padding=3, IN=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.conv2 = nn.Sequential(
            OSBlockAIN(channels[0], channels[1], IN=True), OSBlockAIN(channels[1], channels[1], IN=True)
        )
        self.pool2 = transition(channels[1])
        self.conv3 = nn.Sequential(OSBlockAIN(channels[1], channels[2]), OSBlockAIN(channels[2], channels[2], IN=True))
        self.pool3 = transition(channels[2])
        self.conv4 = nn.Sequential(OSBlockAIN(channels[2], channels[3], IN=True), OSBlockAIN(channels[3], channels[3]))
        self.conv5 = Conv1x1(channels[3], channels[3])
        init_osnet_weights(self)

    def stages_to_conv3(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool3(self.conv3(self.pool2(self.conv2(x))))


def scaled_channels(channels: Sequence[int], width: float) -> tuple[int, ...]:
    return tuple(max(4, int(round(c * width))) for c in channels)


@backbone("osnet_x1_0")
def osnet_x1_0(last_stride: int = 1, width: float = 1.0) -> OSNet:
    return OSNet(scaled_channels(CHANNELS_X1_0, width))


@backbone("osnet_ain_x1_0")
def osnet_ain_x1_0(last_stride: int = 1, width: float = 1.0) -> OSNetAIN:
    return OSNetAIN(scaled_channels(CHANNELS_X1_0, width))

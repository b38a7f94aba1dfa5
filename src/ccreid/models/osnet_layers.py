"""OSNet's layers (Zhou et al., ICCV 2019 and arXiv 1910.06827): the omni-scale blocks and what
they are made of, shared by the OSNet backbones (models/backbones/osnet.py) and the multi-scale
block (models/blocks/osnet.py).

Layers carry torchreid's names (`osnet.py` and `osnet_ain.py`), so torchreid's published
ImageNet files load directly.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn


class ConvLayer(nn.Module):
    """conv (no bias) -> BN, or affine IN for the AIN stem -> ReLU."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, IN=False):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.bn = nn.InstanceNorm2d(out_channels, affine=True) if IN else nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class Conv1x1(ConvLayer):
    """1x1 conv -> BN -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, 1)


class Conv1x1Linear(nn.Module):
    """1x1 conv -> BN, no activation; `bn=False` leaves normalisation to the caller (AIN)."""

    def __init__(self, in_channels: int, out_channels: int, bn: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels) if bn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return x if self.bn is None else self.bn(x)


class LightConv3x3(nn.Module):
    """Lite 3x3: a pointwise 1x1 conv, then a depthwise 3x3 conv -> BN -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False, groups=out_channels)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv2(self.conv1(x))))


def lite_stack(channels: int, depth: int) -> nn.Sequential:
    """`depth` stacked lite 3x3 convs: receptive field 3 + 2 * (depth - 1)."""
    return nn.Sequential(*(LightConv3x3(channels, channels) for _ in range(depth)))


class LightConvStream(nn.Module):
    """osnet_ain.py's wrapper of one stream (names `layers.<i>`)."""

    def __init__(self, channels: int, depth: int):
        super().__init__()
        self.layers = lite_stack(channels, depth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class ChannelGate(nn.Module):
    """OSNet's unified aggregation gate: sigmoid(fc2(relu(fc1(avgpool(x))))) * x.

    The same function as the gate `se_avg` (lab-log entry 196), under torchreid's names.
    """

    def __init__(self, in_channels: int, reduction: int = 16):
        super().__init__()
        self.global_avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(in_channels, in_channels // reduction, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(in_channels // reduction, in_channels, 1)
        self.gate_activation = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.fc2(self.relu(self.fc1(self.global_avgpool(x))))
        return self.gate_activation(weights) * x


class OmniScaleBlock(nn.Module, ABC):
    """The forward shared by both torchreid layouts of the omni-scale residual bottleneck:

        x -> conv1 (1x1 reduce to out/4) -> T=4 streams of 1..4 lite 3x3 convs
          -> the SAME gate rescales every stream (unified aggregation gate) -> sum
          -> conv3 (1x1 expand) -> + shortcut -> ReLU,

    with an optional InstanceNorm `IN` after the residual sum (osnet.py) or on conv3's output
    inside the residual (osnet_ain.py's OSBlockINin). Subclasses build the layers under the
    names of their checkpoints and say where `IN` sits.
    """

    IN_inside_residual = False
    # Built by the subclasses; declared for the shared forward.
    conv1: nn.Module
    gate: nn.Module
    conv3: nn.Module
    downsample: nn.Module | None
    IN: nn.Module | None

    @abstractmethod
    def streams(self) -> Iterable[nn.Module]: ...

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.conv1(x)
        out = self.conv3(sum(self.gate(stream(reduced)) for stream in self.streams()))
        if self.IN is not None and self.IN_inside_residual:
            out = self.IN(out)
        out = out + (x if self.downsample is None else self.downsample(x))
        if self.IN is not None and not self.IN_inside_residual:
            out = self.IN(out)
        return F.relu(out)


class OSBlock(OmniScaleBlock):
    """osnet.py layout: streams are attributes conv2a (a bare lite conv), conv2b..conv2d.

    `gate` builds the gate at the bottleneck width; OSNet's ChannelGate by default, a lab-log
    gate in the multi-scale module.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        IN: bool = False,
        gate: Callable[[int], nn.Module] = ChannelGate,
    ):
        super().__init__()
        mid_channels = out_channels // 4
        self.conv1 = Conv1x1(in_channels, mid_channels)
        self.conv2a = LightConv3x3(mid_channels, mid_channels)
        self.conv2b = lite_stack(mid_channels, 2)
        self.conv2c = lite_stack(mid_channels, 3)
        self.conv2d = lite_stack(mid_channels, 4)
        self.gate = gate(mid_channels)
        self.conv3 = Conv1x1Linear(mid_channels, out_channels)
        self.downsample = Conv1x1Linear(in_channels, out_channels) if in_channels != out_channels else None
        self.IN = nn.InstanceNorm2d(out_channels, affine=True) if IN else None

    def streams(self) -> Iterable[nn.Module]:
        return (self.conv2a, self.conv2b, self.conv2c, self.conv2d)


class OSBlockAIN(OmniScaleBlock):
    """osnet_ain.py layout: streams in the ModuleList `conv2`. With `IN=True` (torchreid's
    OSBlockINin) conv3 has no BN and the InstanceNorm normalises its output inside the residual."""

    IN_inside_residual = True

    def __init__(self, in_channels: int, out_channels: int, IN: bool = False):
        super().__init__()
        mid_channels = out_channels // 4
        self.conv1 = Conv1x1(in_channels, mid_channels)
        self.conv2 = nn.ModuleList(LightConvStream(mid_channels, depth) for depth in range(1, 5))
        self.gate = ChannelGate(mid_channels)
        self.conv3 = Conv1x1Linear(mid_channels, out_channels, bn=not IN)
        self.downsample = Conv1x1Linear(in_channels, out_channels) if in_channels != out_channels else None
        self.IN = nn.InstanceNorm2d(out_channels, affine=True) if IN else None

    def streams(self) -> Iterable[nn.Module]:
        return self.conv2


def transition(channels: int) -> nn.Sequential:
    """1x1 conv then 2x2 average pooling: halves the resolution between stages."""
    return nn.Sequential(Conv1x1(channels, channels), nn.AvgPool2d(2, stride=2))


def init_osnet_weights(module: nn.Module) -> None:
    """OSNet's initialisation: He-normal (fan-out) convs with zero bias, norms at identity."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

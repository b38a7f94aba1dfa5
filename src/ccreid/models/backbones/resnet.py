"""ResNet backbones, `model.backbone` `resnet50` (torchvision's ResNet-50), `resnet50_ibn_a` (its
IBN-a variant) and `resnet_tiny` (a tiny ResNet for tests).

Parameter names are those of the published checkpoints (torchvision's `resnet50`, IBN-Net's
`resnet50_ibn_a`) minus the ImageNet classifier `fc`, so their files load without renaming. The
blocks are written here rather than imported from torchvision: importing torchvision imports
torch._dynamo (about 1.7 s), which an extraction needs nowhere else. They build their layers in
torchvision's order and initialise them as it does, so a seed gives torchvision's weights
(tests/test_models.py compares them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import nn

from ccreid.core.registry import backbone
from ccreid.models.base import Backbone


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)


def shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Sequential | None:
    """The projection on a block's identity path where the block changes resolution or width."""
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and the identity (He et al., CVPR 2016)."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3x3(in_channels, planes, stride)
        self.bn1: nn.Module = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x if self.downsample is None else self.downsample(x)  # in place: one map less per block
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (which carries the stride, as torchvision's "ResNet v1.5"), 1x1 expand by 4."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv1x1(in_channels, planes)
        self.bn1: nn.Module = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += x if self.downsample is None else self.downsample(x)  # in place: one map less per block
        return self.relu(out)


def make_layer(
    block: type[BasicBlock | Bottleneck], in_channels: int, planes: int, blocks: int, stride: int
) -> nn.Sequential:
    """`blocks` blocks, the first carrying the stride (and the shortcut, built before it)."""
    out_channels = planes * block.expansion
    layers = [block(in_channels, planes, stride, shortcut(in_channels, out_channels, stride))]
    layers += [block(out_channels, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def init_weights(model: nn.Module) -> None:
    """torchvision's ResNet initialisation: He-normal convolutions (fan-out), unit BatchNorm."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class ResNetStages(Backbone):
    """forward / forward_features shared by every ResNet-layout backbone.

    Subclasses define conv1, bn1, relu, maxpool, layer1..layer4, `mid_channels` (layer3's width)
    and `out_channels` (layer4's width).
    """

    # Declared so the forward passes type-check (nn.Module's __getattr__ types as Tensor | Module).
    conv1: nn.Conv2d
    bn1: nn.Module
    relu: nn.ReLU
    maxpool: nn.Module
    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (layer3 map, layer4 map)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        mid_map = self.layer3(self.layer2(self.layer1(x)))
        return mid_map, self.layer4(mid_map)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[1]


def set_last_stride(layer4: nn.Sequential, stride: int) -> None:
    """Set the stride of layer4's first bottleneck, on its main path and on its shortcut.

    Stride 1 keeps a 384x192 input at a 24x12 final map instead of 12x6 (Luo et al., "Bag of
    Tricks", CVPR-W 2019; the CAL recipe); the weights are unchanged, so ImageNet files still load.
    """
    first = layer4[0]
    cast(nn.Conv2d, first.conv2).stride = (stride, stride)
    shortcut = cast(nn.Sequential, first.downsample)  # layer4 changes width: it has a shortcut conv
    cast(nn.Conv2d, shortcut[0]).stride = (stride, stride)


class IBN(nn.Module):
    """Instance-Batch Normalisation (Pan et al., "Two at Once", ECCV 2018).

    The first `int(planes * ratio)` channels are instance-normalised (removing per-image style
    such as colour and contrast), the rest batch-normalised. Names `IN` / `BN` follow IBN-Net.
    """

    def __init__(self, planes: int, ratio: float = 0.5):
        super().__init__()
        # Not `half`: that would shadow nn.Module.half().
        self.instance_channels = int(planes * ratio)
        self.IN = nn.InstanceNorm2d(self.instance_channels, affine=True)
        self.BN = nn.BatchNorm2d(planes - self.instance_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        instance_part, batch_part = torch.split(x, [self.instance_channels, x.shape[1] - self.instance_channels], dim=1)
        return torch.cat([self.IN(instance_part.contiguous()), self.BN(batch_part.contiguous())], 1)


PLANES = (64, 128, 256, 512)  # each stage's bottleneck width; its output is 4 times it
BLOCKS = (3, 4, 6, 3)  # bottlenecks per stage: ResNet-50


class ResNet50(ResNetStages):
    """torchvision's ResNet-50 without avgpool/fc; `ibn=True` gives IBN-Net's resnet50_ibn_a.

    `width` scales every stage's channels (1.0 = the published network, whose checkpoints load).
    A narrow ResNet-50 keeps the depth, strides and IBN placement — the same code paths — at a
    cost a 2-core CPU can train: the synthetic demo set uses it (datasets.synthetic.overrides).
    """

    def __init__(self, last_stride: int = 1, ibn: bool = False, width: float = 1.0):
        super().__init__()
        self._build_stages(PLANES)
        # torchvision builds its ImageNet classifier before it initialises, drawing from the seed:
        # built and dropped here, so that a seed gives torchvision's weights.
        nn.Linear(PLANES[-1] * Bottleneck.expansion, 1000)
        init_weights(self)
        if width != 1.0:
            # Drawn after the full-width build's draws, as since the narrow network was introduced:
            # a seed keeps giving the demo's recorded weights.
            self._build_stages([max(4, int(round(p * width))) for p in PLANES])
            init_weights(self)
        self.mid_channels = cast(nn.Conv2d, self.layer3[-1].conv3).out_channels
        self.out_channels = cast(nn.Conv2d, self.layer4[-1].conv3).out_channels
        set_last_stride(self.layer4, last_stride)
        if ibn:
            # IBN-a: the first norm of every bottleneck in layer1-3 becomes IBN; layer4 stays BN
            # because the deep layers must keep the discriminative (style-carrying) statistics.
            for layer in (self.layer1, self.layer2, self.layer3):
                for block in layer:
                    block.bn1 = IBN(cast(nn.BatchNorm2d, block.bn1).num_features)

    def _build_stages(self, planes: Sequence[int]) -> None:
        """The stem and the four stages of BLOCKS bottlenecks at these widths."""
        self.conv1 = nn.Conv2d(3, planes[0], kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(planes[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_channels = planes[0]
        for index, (blocks, plane) in enumerate(zip(BLOCKS, planes), start=1):
            setattr(self, f"layer{index}", make_layer(Bottleneck, in_channels, plane, blocks, 1 if index == 1 else 2))
            in_channels = plane * Bottleneck.expansion


class TinyResNet(ResNetStages):
    """A four-stage ResNet of one BasicBlock per stage, for fast CPU tests at 64x32 input.

    No pretrained weights exist for it. The stem is a stride-2 3x3 conv without max-pool so that a
    64x32 input still leaves an 8x4 final map at last stride 1.
    """

    def __init__(self, last_stride: int = 1, widths: Sequence[int] = (16, 32, 64, 128)):
        super().__init__()
        self.mid_channels, self.out_channels = widths[2], widths[3]
        self.conv1 = nn.Conv2d(3, widths[0], 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity()
        strides = (1, 2, 2, last_stride)
        in_widths = (widths[0], *widths[:3])
        for index, (in_width, width, stride) in enumerate(zip(in_widths, widths, strides), start=1):
            setattr(self, f"layer{index}", make_layer(BasicBlock, in_width, width, 1, stride))
        init_weights(self)


@backbone("resnet50")
def resnet50(last_stride: int = 1, width: float = 1.0) -> ResNet50:
    return ResNet50(last_stride, width=width)


@backbone("resnet50_ibn_a")
def resnet50_ibn_a(last_stride: int = 1, width: float = 1.0) -> ResNet50:
    return ResNet50(last_stride, ibn=True, width=width)


@backbone("resnet_tiny")
def resnet_tiny(last_stride: int = 1, width: float = 1.0) -> TinyResNet:
    return TinyResNet(last_stride, tuple(max(4, int(round(c * width))) for c in (16, 32, 64, 128)))

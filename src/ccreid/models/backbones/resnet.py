"""ResNet backbones, `model.backbone` `resnet50` (torchvision's ResNet-50), `resnet50_ibn_a` (its
IBN-a variant) and `resnet_tiny` (a tiny ResNet for tests).

Parameter names are those of the published checkpoints (torchvision's `resnet50`, IBN-Net's
`resnet50_ibn_a`) minus the ImageNet classifier `fc`, so their files load without renaming.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from ccreid.core.registry import backbone
from ccreid.models.base import Backbone


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


class ResNet50(ResNetStages, ResNet):
    """torchvision ResNet-50 without avgpool/fc; `ibn=True` gives IBN-Net's resnet50_ibn_a.

    `width` scales every stage's channels (1.0 = the published network, whose checkpoints load).
    A narrow ResNet-50 keeps the depth, strides and IBN placement — the same code paths — at a
    cost a 2-core CPU can train: the synthetic demo set uses it (datasets.synthetic.overrides).
    """

    def __init__(self, last_stride: int = 1, ibn: bool = False, width: float = 1.0):
        super().__init__(Bottleneck, [3, 4, 6, 3])
        # Pooling and the classifier belong to the re-id head.
        del self.avgpool, self.fc
        if width != 1.0:
            self._rebuild_narrow(width)
        self.mid_channels = cast(nn.Conv2d, self.layer3[-1].conv3).out_channels
        self.out_channels = cast(nn.Conv2d, self.layer4[-1].conv3).out_channels
        set_last_stride(self.layer4, last_stride)
        if ibn:
            # IBN-a: the first norm of every bottleneck in layer1-3 becomes IBN; layer4 stays BN
            # because the deep layers must keep the discriminative (style-carrying) statistics.
            for layer in (self.layer1, self.layer2, self.layer3):
                for block in layer:
                    block.bn1 = IBN(cast(nn.BatchNorm2d, block.bn1).num_features)

    def _rebuild_narrow(self, width: float) -> None:
        planes = [max(4, int(round(p * width))) for p in (64, 128, 256, 512)]
        self.inplanes = planes[0]
        self.conv1 = nn.Conv2d(3, planes[0], kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(planes[0])
        for index, (count, plane) in enumerate(zip([3, 4, 6, 3], planes), start=1):
            setattr(self, f"layer{index}", super()._make_layer(Bottleneck, plane, count, stride=1 if index == 1 else 2))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")


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
            setattr(self, f"layer{index}", nn.Sequential(_basic_block(in_width, width, stride)))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")


def _basic_block(in_channels: int, out_channels: int, stride: int) -> BasicBlock:
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
            nn.BatchNorm2d(out_channels),
        )
    return BasicBlock(in_channels, out_channels, stride, downsample)


@backbone("resnet50")
def resnet50(last_stride: int = 1, width: float = 1.0) -> ResNet50:
    return ResNet50(last_stride, width=width)


@backbone("resnet50_ibn_a")
def resnet50_ibn_a(last_stride: int = 1, width: float = 1.0) -> ResNet50:
    return ResNet50(last_stride, ibn=True, width=width)


@backbone("resnet_tiny")
def resnet_tiny(last_stride: int = 1, width: float = 1.0) -> TinyResNet:
    return TinyResNet(last_stride, tuple(max(4, int(round(c * width))) for c in (16, 32, 64, 128)))

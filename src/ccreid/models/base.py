"""The interfaces every backbone and every pooling offer the re-id head (their registries:
models/backbones/, models/poolings/; the contracts in docs/extending.md)."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn


class Backbone(nn.Module, ABC):
    """`out_channels` (final map), `mid_channels` (the map before the last stage) and
    `forward_features(x) -> (mid_map, final_map)`; set and defined by each backbone."""

    mid_channels: int
    out_channels: int

    @abstractmethod
    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


class GlobalPooling(nn.Module):
    """B x C x H x W -> B x (expansion * C); `expansion` is set by each pooling."""

    expansion: int

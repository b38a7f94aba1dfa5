"""The interface every backbone offers the re-id head (ccreid.models.backbones registers them)."""

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

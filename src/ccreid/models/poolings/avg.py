"""Global average pooling (`model.pooling: avg`, the lab log's "池化mean")."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ccreid.core.registry import pooling
from ccreid.models.base import GlobalPooling


@pooling("avg")
class AvgPool(GlobalPooling):
    """Global average pooling. B x C x H x W -> B x C."""

    expansion = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x, 1).flatten(1)

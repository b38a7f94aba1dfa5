"""[global max, global avg] concatenated (`model.pooling: maxavg`, CAL's pooling)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ccreid.core.registry import pooling
from ccreid.models.base import GlobalPooling


@pooling("maxavg")
class MaxAvgPool(GlobalPooling):
    """[global max, global avg] on channels: B x C x H x W -> B x 2C."""

    expansion = 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.adaptive_max_pool2d(x, 1), F.adaptive_avg_pool2d(x, 1)], dim=1).flatten(1)

"""Global max pooling (`model.pooling: max`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ccreid.core.registry import pooling
from ccreid.models.base import GlobalPooling


@pooling("max")
class MaxPool(GlobalPooling):
    """Global max pooling. B x C x H x W -> B x C."""

    expansion = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_max_pool2d(x, 1).flatten(1)

"""Generalised-mean pooling (`model.pooling: gem`; Radenovic et al., TPAMI 2018)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ccreid.core.registry import pooling
from ccreid.models.base import GlobalPooling


@pooling("gem")
class GeMPool(GlobalPooling):
    """(mean x^p)^(1/p), p learnt: p = 1 is average pooling, p -> infinity max pooling; p starts at
    `p` (3 by default, `model.pooling: {name: gem, p: 4.0}` changes it)."""

    expansion = 1

    def __init__(self, p: float = 3.0, eps: float = 1e-6):
        super().__init__()
        self.p = nn.Parameter(torch.full((1,), p))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        powered = x.clamp(min=self.eps).pow(self.p)
        return F.adaptive_avg_pool2d(powered, 1).flatten(1).pow(1.0 / self.p)

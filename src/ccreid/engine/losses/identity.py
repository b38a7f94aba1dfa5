"""Loss term `id`: the identity classifier's label-smoothed cross-entropy (always on)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ccreid.core.registry import loss
from ccreid.engine.losses.term import LossTerm, Step, TermContext


def cross_entropy_label_smooth(logits: torch.Tensor, targets: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Cross-entropy against (1 - epsilon) * one_hot + epsilon / K (Szegedy et al., CVPR 2016)."""
    return F.cross_entropy(logits, targets, label_smoothing=epsilon)


@loss("id")
class IdentityLoss(LossTerm):
    def __init__(self, context: TermContext, label_smoothing: float):
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, step: Step) -> torch.Tensor:
        return cross_entropy_label_smooth(step.outputs["logits"], step.pids, self.label_smoothing)

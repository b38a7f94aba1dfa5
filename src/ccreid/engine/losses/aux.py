"""Loss term `aux`: deep supervision, the identity loss on the auxiliary head's logits (the lab
log's "25ep 开启辅助训练"), from `start_epoch` on, weighted."""

from __future__ import annotations

import torch

from ccreid.core.registry import loss
from ccreid.engine.losses.identity import cross_entropy_label_smooth
from ccreid.engine.losses.term import LossTerm, Step, TermContext


@loss("aux")
class AuxiliaryLoss(LossTerm):
    """With the identity loss's label smoothing (loss.id.label_smoothing)."""

    uses_aux = True

    def __init__(self, context: TermContext, start_epoch: int, weight: float):
        super().__init__()
        self.start_epoch, self.weight = start_epoch, weight
        self.label_smoothing = context.loss.id.label_smoothing

    def forward(self, step: Step) -> torch.Tensor:
        return self.weight * cross_entropy_label_smooth(step.outputs["aux_logits"], step.pids, self.label_smoothing)

"""Loss term `distill`: the main head teaches the auxiliary head (the lab log's "蒸馏损失*10"),
from the auxiliary head's start epoch (loss.aux.start_epoch) on, weighted."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ccreid.core.registry import loss
from ccreid.engine.losses.term import LossTerm, Step, TermContext


def distillation_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(teacher / T) || softmax(student / T)) * T^2, batch mean (Hinton et al., 2015).

    The teacher (main head) is detached: only the student (auxiliary head) learns from it. T^2
    keeps the gradient scale independent of T.
    """
    student = F.log_softmax(student_logits / temperature, dim=1)
    teacher = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    return F.kl_div(student, teacher, log_target=True, reduction="batchmean") * temperature**2


@loss("distill")
class DistillationLoss(LossTerm):
    uses_aux = True

    def __init__(self, context: TermContext, weight: float, temperature: float):
        super().__init__()
        self.start_epoch = context.loss.aux.start_epoch
        self.weight, self.temperature = weight, temperature

    def forward(self, step: Step) -> torch.Tensor:
        outputs = step.outputs
        return self.weight * distillation_kl(outputs["aux_logits"], outputs["logits"], self.temperature)

"""Loss term `triplet`: batch-hard triplet loss over the global batch (weight × loss)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ccreid.core.registry import loss
from ccreid.engine.losses.term import LossTerm, Step, TermContext


def batch_hard_triplet(features: torch.Tensor, pids: torch.Tensor, margin: float) -> torch.Tensor:
    """Batch-hard triplet loss (Hermans et al., 2017) with cosine distance 1 - cos, as in CAL.

    For each anchor: the farthest sample of its identity (itself when alone) and the nearest of
    another identity; loss = mean(relu(d_ap - d_an + margin)).
    """
    normalised = F.normalize(features, dim=1)
    distance = 1 - normalised @ normalised.t()
    same_id = pids.unsqueeze(0) == pids.unsqueeze(1)
    hardest_positive = distance.masked_fill(~same_id, float("-inf")).amax(dim=1)
    hardest_negative = distance.masked_fill(same_id, float("inf")).amin(dim=1)
    return F.relu(hardest_positive - hardest_negative + margin).mean()


@loss("triplet")
class TripletLoss(LossTerm):
    """Over the global batch: every process sees every embedding (gathered with its gradient)."""

    def __init__(self, context: TermContext, weight: float, margin: float):
        super().__init__()
        self.world, self.weight, self.margin = context.world, weight, margin

    def forward(self, step: Step) -> torch.Tensor:
        features = self.world.gather_with_grad(step.outputs["features"])
        return self.weight * batch_hard_triplet(features, self.world.gather(step.pids), self.margin)

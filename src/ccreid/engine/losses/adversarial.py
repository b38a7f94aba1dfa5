"""Loss term `adversarial`: CAL's clothes-based adversarial loss (the lab log's "服装平滑ce",
clothes-smoothed CE), from the clothes classifier's start epoch (loss.clothes.start_epoch) on."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ccreid.core.registry import loss
from ccreid.engine.losses.term import LossTerm, Step, TermContext


def clothes_adversarial_loss(
    clothes_logits: torch.Tensor,
    clothes_labels: torch.Tensor,
    positive_mask: torch.Tensor,
    epsilon: float,
) -> torch.Tensor:
    """CAL's clothes-based adversarial loss (Gu et al., CVPR 2022).

    clothes_logits: B x C, the (already scaled) clothes-classifier logits of the live embedding.
    positive_mask: B x C, 1 where clothes class c belongs to sample b's identity.

    For each sample and each positive clothes class c, c is scored by a softmax over {c} and the
    NEGATIVE clothes classes (other identities' clothes) only, so the identity's clothes do not
    compete with each other. The target puts 1 - epsilon on the sample's own clothes and epsilon
    spread evenly over all clothes of its identity: the embedding is pushed to be equally
    compatible with every outfit of the person, i.e. to forget which one is worn.
    """
    positive = positive_mask.bool()
    # log sum_{negatives} exp(logit), -inf when a sample has no negative clothes
    negatives_only = clothes_logits.masked_fill(positive, float("-inf"))
    negatives_lse = torch.logsumexp(negatives_only, dim=1, keepdim=True)
    log_prob = clothes_logits - torch.logaddexp(clothes_logits, negatives_lse)
    target = epsilon * positive_mask / positive_mask.sum(dim=1, keepdim=True)
    target = target + (1 - epsilon) * F.one_hot(clothes_labels, clothes_logits.shape[1])
    return -(target * log_prob).sum(dim=1).mean()


@loss("adversarial")
class ClothesAdversarialLoss(LossTerm):
    """The freshly updated clothes classifier (term `clothes`, which comes first) scores the live
    embedding; the backbone learns to make every outfit of the person equally likely."""

    def __init__(self, context: TermContext, epsilon: float, weight: float):
        super().__init__()
        # In a list, so that the classifier (trained by the term `clothes`) is not a submodule of this one.
        self.classifier: list[nn.Module] = [getattr(context.model, "clothes_classifier")]
        self.positive_mask = context.positive_mask
        self.start_epoch = context.loss.clothes.start_epoch
        self.epsilon, self.weight = epsilon, weight

    def forward(self, step: Step) -> torch.Tensor:
        logits = self.classifier[0](step.outputs["features"])
        return self.weight * clothes_adversarial_loss(logits, step.clothes, self.positive_mask[step.pids], self.epsilon)

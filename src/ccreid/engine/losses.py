"""Training losses: label-smoothed CE, CAL's clothes-adversarial loss, triplet, distillation."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cross_entropy_label_smooth(logits: torch.Tensor, targets: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Cross-entropy against (1 - epsilon) * one_hot + epsilon / K (Szegedy et al., CVPR 2016)."""
    return F.cross_entropy(logits, targets, label_smoothing=epsilon)


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


def distillation_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(teacher / T) || softmax(student / T)) * T^2, batch mean (Hinton et al., 2015).

    The teacher (main head) is detached: only the student (auxiliary head) learns from it. T^2
    keeps the gradient scale independent of T.
    """
    student = F.log_softmax(student_logits / temperature, dim=1)
    teacher = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    return F.kl_div(student, teacher, log_target=True, reduction="batchmean") * temperature**2

"""Each loss against a direct per-sample computation from its definition."""

from __future__ import annotations

import math
import random

import pytest
import torch

from ccreid.engine.losses.adversarial import clothes_adversarial_loss
from ccreid.engine.losses.distill import distillation_kl
from ccreid.engine.losses.identity import cross_entropy_label_smooth
from ccreid.engine.losses.triplet import batch_hard_triplet


def test_label_smoothed_cross_entropy():
    torch.manual_seed(0)
    logits, targets, epsilon = torch.randn(5, 7), torch.tensor([0, 3, 6, 3, 1]), 0.1
    expected = 0.0
    for row, target in zip(logits.tolist(), targets.tolist()):
        log_z = math.log(sum(math.exp(v) for v in row))
        for k, value in enumerate(row):
            weight = (1 - epsilon) * (k == target) + epsilon / len(row)
            expected -= weight * (value - log_z)
    expected /= len(targets)
    assert cross_entropy_label_smooth(logits, targets, epsilon).item() == pytest.approx(expected, rel=1e-5)


def clothes_adversarial_by_definition(logits, labels, clothes_pid, pids, epsilon):
    """For each sample b and each clothes class c of b's identity: log p = z_c - log(e^z_c +
    sum of e^z_n over clothes n of other identities); target (1-eps) on b's clothes + eps/|pos|
    on each clothes of b's identity."""
    total = 0.0
    for b, row in enumerate(logits.tolist()):
        positives = [c for c, pid in enumerate(clothes_pid) if pid == pids[b]]
        negatives = [c for c, pid in enumerate(clothes_pid) if pid != pids[b]]
        negative_sum = sum(math.exp(row[n]) for n in negatives)
        for c in positives:
            log_p = row[c] - math.log(math.exp(row[c]) + negative_sum)
            weight = (1 - epsilon) * (c == labels[b]) + epsilon / len(positives)
            total -= weight * log_p
    return total / len(logits)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clothes_adversarial_loss_matches_definition(seed):
    rng = random.Random(seed)
    num_ids, num_clothes, batch = 4, 11, 8
    # every identity owns at least one clothes class, the rest are assigned at random
    clothes_pid = list(range(num_ids)) + [rng.randrange(num_ids) for _ in range(num_clothes - num_ids)]
    rng.shuffle(clothes_pid)
    pids = [rng.randrange(num_ids) for _ in range(batch)]
    labels = [rng.choice([c for c, pid in enumerate(clothes_pid) if pid == p]) for p in pids]
    logits = torch.empty(batch, num_clothes).uniform_(-16, 16, generator=torch.Generator().manual_seed(seed))
    positive_mask = torch.tensor([[float(clothes_pid[c] == p) for c in range(num_clothes)] for p in pids])
    loss = clothes_adversarial_loss(logits, torch.tensor(labels), positive_mask, epsilon=0.1)
    expected = clothes_adversarial_by_definition(logits, labels, clothes_pid, pids, 0.1)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_clothes_adversarial_loss_without_negatives_is_finite():
    logits = torch.randn(2, 3, requires_grad=True)
    loss = clothes_adversarial_loss(logits, torch.tensor([0, 2]), torch.ones(2, 3), epsilon=0.1)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(logits.grad).all()


def test_batch_hard_triplet_matches_brute_force():
    torch.manual_seed(0)
    features, pids, margin = torch.randn(9, 6), torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 3]), 0.3
    unit = [f / f.norm() for f in features]
    expected = 0.0
    for a in range(len(pids)):
        distances = [1 - float(unit[a] @ unit[j]) for j in range(len(pids))]
        hardest_positive = max(d for j, d in enumerate(distances) if pids[j] == pids[a])
        hardest_negative = min(d for j, d in enumerate(distances) if pids[j] != pids[a])
        expected += max(0.0, hardest_positive - hardest_negative + margin)
    expected /= len(pids)
    assert batch_hard_triplet(features, pids, margin).item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_distillation_kl_matches_formula_and_detaches_teacher():
    torch.manual_seed(0)
    student = torch.randn(4, 5, requires_grad=True)
    teacher = torch.randn(4, 5, requires_grad=True)
    temperature = 4.0
    expected = 0.0
    for s_row, t_row in zip(student.tolist(), teacher.tolist()):
        p = torch.softmax(torch.tensor(t_row) / temperature, 0).tolist()
        q = torch.softmax(torch.tensor(s_row) / temperature, 0).tolist()
        expected += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    expected = expected / 4 * temperature**2
    loss = distillation_kl(student, teacher, temperature)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert teacher.grad is None and student.grad is not None
    assert distillation_kl(teacher, teacher, temperature).item() == pytest.approx(0.0, abs=1e-6)

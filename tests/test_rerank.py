"""k-reciprocal re-ranking against the paper's formulas written as plain loops, and its effect."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ccreid.evaluation.metrics import rank_metrics
from ccreid.evaluation.rerank import k_reciprocal_rerank


def paper_rerank(q_feats, g_feats, k1, k2, lambda_value):
    """Zhong et al. (CVPR 2017), one set and one item at a time, in float64."""
    feats = np.concatenate([q_feats, g_feats]).astype(np.float64)
    n, num_q = len(feats), len(q_feats)
    dist = ((feats[:, None, :] - feats[None, :, :]) ** 2).sum(-1)
    dist = dist / dist.max(axis=1, keepdims=True)
    order = np.argsort(dist, axis=1, kind="stable")

    def reciprocal(p, k):  # R(p, k)
        return {g for g in order[p, : k + 1] if p in order[g, : k + 1]}

    weights = np.zeros((n, n))
    for p in range(n):
        grown = set(reciprocal(p, k1))
        for q in reciprocal(p, k1):
            half = reciprocal(q, int(round(k1 / 2)))
            if len(half & reciprocal(p, k1)) > 2 / 3 * len(half):
                grown |= half
        members = sorted(grown)
        weights[p, members] = np.exp(-dist[p, members])
        weights[p] /= weights[p].sum()
    expanded = np.array([weights[order[p, :k2]].mean(axis=0) for p in range(n)])
    final = np.zeros((num_q, n - num_q))
    for i in range(num_q):
        for j in range(num_q, n):
            both = expanded[[i, j]]
            jaccard = 1 - both.min(axis=0).sum() / both.max(axis=0).sum()
            final[i, j - num_q] = (1 - lambda_value) * jaccard + lambda_value * dist[i, j]
    return final


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("k1", "k2", "lambda_value"), [(20, 6, 0.3), (5, 3, 0.5), (7, 1, 0.0)])
def test_matches_the_paper_formulas(seed, k1, k2, lambda_value):
    rng = np.random.default_rng(seed)
    q_feats, g_feats = rng.normal(size=(6, 8)), rng.normal(size=(20, 8))
    expected = paper_rerank(q_feats, g_feats, k1, k2, lambda_value)
    got = k_reciprocal_rerank(torch.as_tensor(q_feats), torch.as_tensor(g_feats), k1, k2, lambda_value)
    assert got.shape == (6, 20)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)


def test_improves_map_when_identities_lie_on_curves():
    # Each identity's images lie along a curve (pose/viewpoint drift): its far ends are farther
    # apart than some other identity's images, but linked through shared neighbours.
    rng = np.random.default_rng(0)
    ids, per_id, dim = 12, 10, 16
    centres = rng.normal(size=(ids, dim)) * 1.2
    directions = rng.normal(size=(ids, 2, dim))
    t = np.linspace(-1, 1, per_id)
    feats = (
        centres[:, None]
        + 2.5 * np.cos(t)[None, :, None] * directions[:, None, 0]
        + 2.5 * np.sin(2 * t)[None, :, None] * directions[:, None, 1]
    )
    feats = feats + 0.15 * rng.normal(size=feats.shape)
    pids = np.repeat(np.arange(ids), per_id)
    cams = np.tile(np.arange(per_id), ids)
    is_query = cams % 5 == 0
    feats = torch.as_tensor(feats.reshape(-1, dim))
    q_feats, g_feats = feats[is_query], feats[~is_query]
    labels = (pids[is_query], pids[~is_query], cams[is_query], cams[~is_query])
    before = rank_metrics(torch.cdist(q_feats, g_feats), *labels)
    after = rank_metrics(k_reciprocal_rerank(q_feats, g_feats), *labels)
    assert after["mAP"] > before["mAP"] + 0.05, (before["mAP"], after["mAP"])

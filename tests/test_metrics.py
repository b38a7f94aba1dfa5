"""rank_metrics against a straightforward per-query loop, and a case computed by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ccreid.metrics import rank_metrics


def reference_loop(dist, q_pids, g_pids, q_cams, g_cams, q_clothes, g_clothes, mode, max_rank=20):
    """The textbook evaluation: sort each row, drop junk, read AP / CMC / INP off the matches."""
    aps, inps, cmc, evaluated = [], [], np.zeros(max_rank), 0
    for i in range(len(q_pids)):
        order = np.argsort(dist[i], kind="stable")
        same_pid = g_pids[order] == q_pids[i]
        other_cam = g_cams[order] != q_cams[i]
        if mode == "standard":
            good = same_pid & other_cam
        elif mode == "cc":
            good = same_pid & other_cam & (g_clothes[order] != q_clothes[i])
        else:
            good = same_pid & other_cam & (g_clothes[order] == q_clothes[i])
        kept = good[good | ~same_pid]
        if not kept.any():
            continue
        evaluated += 1
        hits = np.flatnonzero(kept)
        aps.append(np.mean(np.arange(1, len(hits) + 1) / (hits + 1)))
        inps.append(len(hits) / (hits[-1] + 1))
        cmc[hits[0]:] += 1
    return {"mAP": np.mean(aps), "mINP": np.mean(inps), "cmc": cmc / evaluated,
            "queries": evaluated, "skipped": len(q_pids) - evaluated}


def random_case(seed, num_q=120, num_g=400, ids=30):
    rng = np.random.default_rng(seed)
    # Some query ids are absent from the gallery: those queries must be skipped and counted.
    q_pids, g_pids = rng.integers(0, ids + 5, num_q), rng.integers(0, ids, num_g)
    q_cams, g_cams = rng.integers(0, 3, num_q), rng.integers(0, 3, num_g)
    q_clothes, g_clothes = rng.integers(0, 2, num_q), rng.integers(0, 2, num_g)
    # Distances with structure (matches tend to be closer) and no ties.
    dist = rng.random((num_q, num_g)) + 0.5 * (q_pids[:, None] != g_pids[None, :])
    return dist.astype(np.float64), q_pids, g_pids, q_cams, g_cams, q_clothes, g_clothes


@pytest.mark.parametrize("mode", ["standard", "cc", "sc"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference_loop(mode, seed):
    dist, *labels = random_case(seed)
    expected = reference_loop(dist, *labels, mode)
    # A small chunk forces several query chunks.
    got = rank_metrics(dist, *labels, mode=mode, chunk_elements=5000)
    assert got["queries"] == expected["queries"] and got["skipped"] == expected["skipped"]
    assert expected["skipped"] > 0
    assert got["mAP"] == pytest.approx(expected["mAP"], abs=1e-9)
    assert got["mINP"] == pytest.approx(expected["mINP"], abs=1e-9)
    np.testing.assert_allclose(got["cmc"], expected["cmc"], atol=1e-12)


def test_hand_computed_case():
    # One query (pid 1, camera 0, clothes 0); gallery sorted by distance:
    #   g0 pid 2 (negative)        rank 1
    #   g1 pid 1 cam 0             junk (same camera) in every mode
    #   g2 pid 1 cam 1 clothes 0   good in standard/sc, junk in cc
    #   g3 pid 3 (negative)
    #   g4 pid 1 cam 2 clothes 1   good in standard/cc, junk in sc
    dist = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]])
    args = ([1], [2, 1, 1, 3, 1], [0], [5, 0, 1, 5, 2], [0], [9, 0, 0, 9, 1])
    standard = rank_metrics(dist, *args, mode="standard", max_rank=4)
    # kept list: g0 g2 g3 g4 -> hits at positions 2 and 4: AP = (1/2 + 2/4) / 2
    assert standard["mAP"] == pytest.approx(0.5)
    assert standard["mINP"] == pytest.approx(2 / 4)
    np.testing.assert_allclose(standard["cmc"], [0, 1, 1, 1])
    cc = rank_metrics(dist, *args, mode="cc", max_rank=4)
    # kept: g0 g3 g4 -> one hit at position 3: AP = 1/3
    assert cc["mAP"] == pytest.approx(1 / 3)
    np.testing.assert_allclose(cc["cmc"], [0, 0, 1, 1])
    sc = rank_metrics(dist, *args, mode="sc", max_rank=4)
    # kept: g0 g2 g3 -> hit at position 2: AP = 1/2
    assert sc["mAP"] == pytest.approx(0.5)


def test_query_without_valid_match_is_skipped_and_counted():
    dist = np.array([[0.1, 0.2], [0.3, 0.1]])
    got = rank_metrics(dist, [1, 2], [1, 3], [0, 0], [1, 1])
    assert got["queries"] == 1 and got["skipped"] == 1
    assert got["mAP"] == 1.0


def test_ties_rank_the_negative_first():
    # Constant features: every distance ties. A match must not win by gallery order.
    dist = np.zeros((1, 4))
    got = rank_metrics(dist, [1], [1, 2, 3, 4], [0], [1, 1, 1, 1], max_rank=4)
    np.testing.assert_allclose(got["cmc"], [0, 0, 0, 1])
    assert got["mAP"] == pytest.approx(0.25)


def test_torch_input_and_euclidean_equal_cosine_rankings():
    rng = np.random.default_rng(3)
    q = torch.nn.functional.normalize(torch.as_tensor(rng.normal(size=(50, 16))), dim=1)
    g = torch.nn.functional.normalize(torch.as_tensor(rng.normal(size=(200, 16))), dim=1)
    q_pids, g_pids = rng.integers(0, 10, 50), rng.integers(0, 10, 200)
    q_cams, g_cams = np.zeros(50, int), np.ones(200, int)
    cosine = rank_metrics(1 - q @ g.T, q_pids, g_pids, q_cams, g_cams)
    euclidean = rank_metrics(torch.cdist(q, g), q_pids, g_pids, q_cams, g_cams)
    assert cosine["mAP"] == euclidean["mAP"]
    np.testing.assert_array_equal(cosine["cmc"], euclidean["cmc"])

"""rank_metrics against a straightforward per-query loop, and a case computed by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ccreid.core.errors import CCReIDError
from ccreid.evaluation.metrics import query_ranks, rank_metrics
from helpers import reference_loop


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


def tie_aware_loop(dist, q_pids, g_pids, q_cams, g_cams, mode="standard"):
    """reference_loop with ties broken against the good item (negatives first), as rank_metrics does."""
    aps, firsts = [], []
    for i in range(len(q_pids)):
        same_pid = g_pids == q_pids[i]
        good = same_pid & (g_cams != q_cams[i])
        order = np.lexsort((good, dist[i]))  # by distance, then negatives (False) before goods
        kept = good[order][(good | ~same_pid)[order]]
        if kept.any():
            hits = np.flatnonzero(kept)
            aps.append(np.mean(np.arange(1, len(hits) + 1) / (hits + 1)))
            firsts.append(hits[0])
    return np.mean(aps), np.array(firsts)


@pytest.mark.parametrize("chunk_elements", [None, 1, 997])
def test_ties_everywhere_match_the_tie_aware_loop(chunk_elements):
    # Distances on a coarse lattice: goods tie with negatives, junk and each other.
    rng = np.random.default_rng(5)
    q_pids, g_pids = rng.integers(0, 6, 40), rng.integers(0, 6, 300)
    q_cams, g_cams = rng.integers(0, 2, 40), rng.integers(0, 2, 300)
    dist = rng.integers(0, 12, (40, 300)).astype(np.float32) / 4
    expected_map, expected_first = tie_aware_loop(dist, q_pids, g_pids, q_cams, g_cams)
    ap, first, _, num_good = query_ranks(dist, q_pids, g_pids, q_cams, g_cams, chunk_elements=chunk_elements)
    answered = num_good > 0
    assert float(ap[answered].mean()) == pytest.approx(expected_map, abs=1e-12)
    np.testing.assert_array_equal(first[answered].numpy(), expected_first)


def skewed_case(seed, num_q=60, num_g=2000):
    """Like real features: a few ids with many images, distances bunched in a narrow band."""
    rng = np.random.default_rng(seed)
    g_pids = np.minimum(rng.geometric(0.05, num_g), 80)
    q_pids = rng.choice(g_pids, num_q)
    q_cams, g_cams = rng.integers(0, 6, num_q), rng.integers(0, 6, num_g)
    dist = 1.0 + 1e-3 * rng.standard_normal((num_q, num_g)) - 2e-3 * (q_pids[:, None] == g_pids[None, :])
    dist[:, rng.integers(0, num_g, 5)] = 1e30  # items far outside the band are still ranked
    return dist.astype(np.float32), q_pids, g_pids, q_cams, g_cams


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("chunk_elements", [None, 3000])
def test_skewed_distances_match_the_tie_aware_loop(seed, chunk_elements):
    dist, *labels = skewed_case(seed)  # float32 in a narrow band: some distances tie
    expected_map, expected_first = tie_aware_loop(dist, *labels)
    ap, first, _, num_good = query_ranks(dist, *labels, chunk_elements=chunk_elements)
    answered = num_good > 0
    assert float(ap[answered].mean()) == pytest.approx(expected_map, abs=1e-12)
    np.testing.assert_array_equal(first[answered].numpy(), expected_first)


def test_memory_layout_does_not_change_results():
    dist, *labels = random_case(4)
    expected = rank_metrics(dist, *labels, mode="cc")
    column_major = torch.as_tensor(dist).T.contiguous().T
    for same_values in (np.asfortranarray(dist), torch.as_tensor(dist), column_major):
        got = rank_metrics(same_values, *labels, mode="cc", chunk_elements=777)
        assert got["mAP"] == expected["mAP"] and got["mINP"] == expected["mINP"]
        np.testing.assert_array_equal(got["cmc"], expected["cmc"])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_distances_are_reported(bad):
    dist, *labels = random_case(0)
    dist[3, 7] = bad
    with pytest.raises(CCReIDError, match="NaN or infinite"):
        rank_metrics(dist, *labels)


def test_the_callers_thread_count_is_restored():
    dist, *labels = random_case(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        rank_metrics(dist, *labels)
        assert torch.get_num_threads() == 3
        dist[0, 0] = np.nan
        with pytest.raises(CCReIDError):
            rank_metrics(dist, *labels)
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(threads)

"""Bootstrap intervals: coverage on data with a known shift, determinism, degenerate inputs."""

from __future__ import annotations

import numpy as np
import pytest

from ccreid.evaluation import stats
from ccreid.core.errors import CCReIDError


def paired_sample(rng: np.random.Generator, queries: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-query APs of a base model and of one better by `shift` on average, per-query noisy."""
    base = rng.beta(2, 5, queries)
    return base, base + shift + rng.normal(0.0, 0.1, queries)


def test_interval_covers_the_true_difference_about_95_percent_of_the_time():
    rng = np.random.default_rng(123)
    shift, repeats = 0.02, 200
    covered = 0
    for _ in range(repeats):
        a, b = paired_sample(rng, queries=150, shift=shift)
        result = stats.paired_bootstrap(a, b, n_resamples=500)
        covered += result["low"] <= shift <= result["high"]
    # Binomial(200, 0.95) stays within this band with probability > 0.999.
    assert 0.89 <= covered / repeats <= 0.99


def test_same_seed_same_interval_and_another_seed_differs():
    a, b = paired_sample(np.random.default_rng(0), queries=300, shift=0.01)
    first = stats.paired_bootstrap(a, b, seed=7)
    assert stats.paired_bootstrap(a, b, seed=7) == first
    assert stats.paired_bootstrap(a, b, seed=8)["low"] != first["low"]


def test_block_size_does_not_change_the_draws(monkeypatch):
    a, b = paired_sample(np.random.default_rng(1), queries=100, shift=0.0)
    whole = stats.paired_bootstrap(a, b, n_resamples=300)
    monkeypatch.setattr(stats, "BLOCK_ELEMENTS", 100 * 7)  # 7 resamples per block, the last one short
    assert stats.paired_bootstrap(a, b, n_resamples=300) == whole


def test_identical_inputs_give_a_zero_interval():
    values = np.random.default_rng(2).random(50)
    result = stats.paired_bootstrap(values, values.copy())
    assert (result["diff"], result["low"], result["high"]) == (0.0, 0.0, 0.0)


def test_clear_difference_excludes_zero():
    a, b = paired_sample(np.random.default_rng(3), queries=400, shift=0.05)
    result = stats.paired_bootstrap(a, b)
    assert result["diff"] == pytest.approx(np.mean(b - a))
    assert 0.0 < result["low"] < result["diff"] < result["high"]


def test_bootstrap_mean_interval_brackets_the_mean():
    hits = (np.random.default_rng(4).random(200) < 0.3).astype(float)  # rank-1 hits
    result = stats.bootstrap_mean(hits, confidence=0.9)
    assert result["mean"] == pytest.approx(hits.mean())
    assert result["low"] < result["mean"] < result["high"]
    assert result["n"] == 200 and result["confidence"] == 0.9


@pytest.mark.parametrize("a, b", [([0.1, 0.2], [0.1]), ([], []), ([0.1, np.nan], [0.1, 0.2])])
def test_bad_inputs_are_user_errors(a, b):
    with pytest.raises(CCReIDError):
        stats.paired_bootstrap(np.array(a), np.array(b))


def test_mean_std_over_seeds():
    assert stats.mean_std([0.5, 0.6, 0.7]) == {"mean": pytest.approx(0.6), "std": pytest.approx(0.1), "n": 3}
    assert stats.mean_std([0.4]) == {"mean": 0.4, "std": 0.0, "n": 1}


# ------------------------------------------------------------------ several training seeds
def seeded_runs(rng: np.random.Generator, seeds: int, queries: int, seed_sd: float, shift: float = 0.0):
    """Per-query APs of `seeds` training runs on the same queries: each run shifted by its own
    seed effect (spread seed_sd), on top of query difficulty shared by every run."""
    difficulty = rng.beta(2, 5, queries)
    return np.stack([difficulty + shift + rng.normal(0, seed_sd) + rng.normal(0, 0.05, queries) for _ in range(seeds)])


def test_seed_spread_widens_the_interval_and_one_run_is_the_query_bootstrap():
    runs = seeded_runs(np.random.default_rng(5), seeds=5, queries=300, seed_sd=0.05)
    across = stats.bootstrap_mean(runs)
    within = stats.bootstrap_mean(runs[0])
    assert across["runs"] == 5 and within["runs"] == 1
    assert across["mean"] == pytest.approx(runs.mean())
    # Query sampling alone gives a narrower interval than with a seed spread of 5 points.
    assert across["high"] - across["low"] > 1.5 * (within["high"] - within["low"])
    assert stats.bootstrap_mean(runs[:1]) == within


def test_a_difference_within_seed_noise_is_not_marked_though_queries_alone_would_mark_it():
    """The issue's case: one seed each, a seed effect looks like a method effect."""
    rng = np.random.default_rng(6)
    base = seeded_runs(rng, seeds=3, queries=400, seed_sd=0.04)
    exp = base + rng.normal(0, 0.04, size=(3, 1))  # no method effect: only other seeds
    exp[0] += 0.03 - (exp[0].mean() - base[0].mean())  # seed 1 happens to be 3 points better
    single = stats.paired_bootstrap(base[0], exp[0])
    several = stats.paired_bootstrap(base, exp)
    assert single["low"] > 0  # the query bootstrap of one seed marks it
    assert several["low"] < 0 < several["high"]  # the seeds' spread does not


def test_runs_from_the_same_seeds_are_drawn_as_pairs():
    """Two experiments trained from the same seeds share each seed's effect (same initial weights
    and batches): drawn as pairs, a method effect smaller than the seed spread is seen; drawn on
    their own, the shared seed effect hides it. Unequal run counts cannot pair."""
    rng = np.random.default_rng(9)
    difficulty = rng.beta(2, 5, 300)
    seed_effects = rng.normal(0, 0.05, size=(4, 1))
    base = difficulty + seed_effects + rng.normal(0, 0.02, (4, 300))
    exp = difficulty + seed_effects + 0.02 + rng.normal(0, 0.02, (4, 300))
    apart = stats.paired_bootstrap(base, exp)
    paired = stats.paired_bootstrap(base, exp, same_seeds=True)
    assert apart["diff"] == paired["diff"] and paired["same_seeds"] and not apart["same_seeds"]
    assert apart["low"] < 0 < apart["high"]
    assert 0 < paired["low"] < 0.02 < paired["high"]
    with pytest.raises(CCReIDError, match="as many runs in both: got 4 and 3"):
        stats.paired_bootstrap(base, exp[:3], same_seeds=True)


def test_seeded_coverage_of_a_real_method_effect():
    rng = np.random.default_rng(7)
    covered, repeats, shift = 0, 100, 0.03
    for _ in range(repeats):
        difficulty = rng.beta(2, 5, 200)
        base = np.stack([difficulty + rng.normal(0, 0.02) + rng.normal(0, 0.05, 200) for _ in range(5)])
        exp = np.stack([difficulty + shift + rng.normal(0, 0.02) + rng.normal(0, 0.05, 200) for _ in range(5)])
        result = stats.paired_bootstrap(base, exp, n_resamples=400)
        covered += result["low"] <= shift <= result["high"]
    # The bootstrap over 5 seeds underestimates their spread by (n-1)/n: coverage a bit under 95%.
    assert 0.80 <= covered / repeats <= 1.0


def test_several_runs_draws_do_not_depend_on_the_block_size(monkeypatch):
    runs = seeded_runs(np.random.default_rng(8), seeds=3, queries=100, seed_sd=0.02)
    whole = stats.paired_bootstrap(runs[:2], runs, n_resamples=300)
    monkeypatch.setattr(stats, "BLOCK_ELEMENTS", 100 * 3 * 7)
    assert stats.paired_bootstrap(runs[:2], runs, n_resamples=300) == whole

"""Uncertainty of ranking metrics: bootstrap over queries and over training seeds.

A 1-point mAP difference between two ablations may be noise from which queries happen to be in
the test set, or from which seed trained the model. Values come as one row per training run
(seed) and one column per query, every run on the same queries. Each bootstrap resample draws
the queries with replacement (the same draw for every run, and for both experiments of a
difference: paired) and, when there are several runs, the runs with replacement; the statistic
is the mean over the drawn runs of the mean over the drawn queries. With several seeds the
interval therefore holds seed-to-seed spread as well as query sampling; with one run it is the
plain query bootstrap and ignores training variance.

A difference between two experiments trained from the same seeds (the i-th run of each from the
same initial weights and batches) draws the runs once for both, as it draws the queries: its
seed spread is then that of the per-seed differences, which the shared seed does not inflate.
"""

from __future__ import annotations

import numpy as np

from ccreid.core.errors import CCReIDError

# Resampled values held at once (int64 indices + float values): bounds memory to ~64 MB.
BLOCK_ELEMENTS = 1 << 22


def _as_values(values, name: str) -> np.ndarray:
    """Per-query values as runs × queries (a 1-D array is one run)."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.size == 0:
        raise CCReIDError(f"{name}: expected per-query values (1-D, or runs × queries), got shape {np.shape(values)}")
    if np.isnan(array).any():
        raise CCReIDError(f"{name}: contains NaN (drop skipped queries before the bootstrap)")
    return array


def _resampled_means(runs: list[np.ndarray], n_resamples: int, seed: int, same_seeds: bool = False) -> list[np.ndarray]:
    """Per resample and per matrix (runs × queries, same queries): the mean over drawn runs of
    the mean over drawn queries. Queries are drawn once for all matrices, block by block; runs
    from a stream of their own, so neither draw depends on the block size: per matrix, or once
    for all when `same_seeds` (the matrices' runs paired row by row)."""
    rng = np.random.default_rng(seed)
    run_rng = np.random.default_rng([seed, 1])
    if same_seeds:
        shared = run_rng.integers(0, len(runs[0]), size=(n_resamples, len(runs[0]))) if len(runs[0]) > 1 else None
        picks = [shared for _ in runs]
    else:
        picks = [run_rng.integers(0, len(m), size=(n_resamples, len(m))) if len(m) > 1 else None for m in runs]
    count = runs[0].shape[1]
    block_rows = max(1, BLOCK_ELEMENTS // (count * max(len(m) for m in runs)))
    means = [np.empty(n_resamples) for _ in runs]
    for start in range(0, n_resamples, block_rows):
        rows = min(block_rows, n_resamples - start)
        indices = rng.integers(0, count, size=(rows, count))
        for matrix, pick, out in zip(runs, picks, means):
            per_run = matrix[:, indices].mean(axis=2).T  # rows × runs
            if pick is not None:
                per_run = np.take_along_axis(per_run, pick[start : start + rows], axis=1)
            out[start : start + rows] = per_run.mean(axis=1)
    return means


def _percentile_interval(means: np.ndarray, confidence: float) -> tuple[float, float]:
    if not 0.0 < confidence < 1.0:
        raise CCReIDError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def bootstrap_mean(values, n_resamples: int = 2000, seed: int = 0, confidence: float = 0.95) -> dict:
    """The mean of per-query values (AP, or 1.0/0.0 for a rank-1 hit; runs × queries for several
    seeds) and its percentile interval."""
    values = _as_values(values, "values")
    (means,) = _resampled_means([values], n_resamples, seed)
    low, high = _percentile_interval(means, confidence)
    return {
        "mean": float(values.mean()),
        "low": low,
        "high": high,
        "n": values.shape[1],
        "runs": len(values),
        "n_resamples": n_resamples,
        "confidence": confidence,
    }


def paired_bootstrap(
    a: np.ndarray,
    b: np.ndarray,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    same_seeds: bool = False,
) -> dict:
    """Mean difference b − a over the same queries (same order; runs × queries for several
    seeds, the two may have different numbers of runs) and its percentile interval.

    Drawing the queries once for both is what makes the bootstrap paired. `same_seeds`: row i of
    `a` and of `b` were trained from the same seed, so the runs are drawn once for both too.
    """
    a, b = _as_values(a, "a"), _as_values(b, "b")
    if a.shape[1] != b.shape[1]:
        raise CCReIDError(f"paired bootstrap needs the same queries in both: got {a.shape[1]} and {b.shape[1]} values")
    if same_seeds and len(a) != len(b):
        raise CCReIDError(f"runs paired by seed need as many runs in both: got {len(a)} and {len(b)}")
    before, after = _resampled_means([a, b], n_resamples, seed, same_seeds)
    low, high = _percentile_interval(after - before, confidence)
    return {
        "diff": float(b.mean() - a.mean()),
        "low": low,
        "high": high,
        "n": a.shape[1],
        "runs": (len(a), len(b)),
        "same_seeds": same_seeds,
        "n_resamples": n_resamples,
        "confidence": confidence,
    }


def mean_std(values) -> dict:
    """Mean and sample standard deviation (ddof=1) of one metric over several seeds.

    One value has no spread to estimate: its std is reported as 0.
    """
    matrix = _as_values(values, "values")
    if len(matrix) != 1:
        raise CCReIDError(f"values: expected one value per seed (1-D), got shape {matrix.shape}")
    values = matrix[0]
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return {"mean": float(values.mean()), "std": std, "n": len(values)}

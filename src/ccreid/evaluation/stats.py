"""Uncertainty of ranking metrics: bootstrap over queries, and the spread over seeds.

A 1-point mAP difference between two ablations may be noise from which queries happen to be in
the test set. Both experiments are evaluated on the same queries, so the paired bootstrap
resamples queries once and reads both experiments off the same draw: the interval of the
difference then reflects only how differently the two models treat the same queries.
"""

from __future__ import annotations

import numpy as np

from ccreid.core.errors import CCReIDError

# Resampled values held at once (int64 indices + float values): bounds memory to ~64 MB.
BLOCK_ELEMENTS = 1 << 22


def _as_values(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or len(array) == 0:
        raise CCReIDError(f"{name}: expected a non-empty 1-D array of per-query values, got shape {array.shape}")
    if np.isnan(array).any():
        raise CCReIDError(f"{name}: contains NaN (drop skipped queries before the bootstrap)")
    return array


def _resampled_means(values: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """Means of `n_resamples` samples drawn with replacement, drawn block by block."""
    rng = np.random.default_rng(seed)
    count = len(values)
    block_rows = max(1, BLOCK_ELEMENTS // count)
    means = np.empty(n_resamples)
    for start in range(0, n_resamples, block_rows):
        rows = min(block_rows, n_resamples - start)
        indices = rng.integers(0, count, size=(rows, count))
        means[start : start + rows] = values[indices].mean(axis=1)
    return means


def _percentile_interval(means: np.ndarray, confidence: float) -> tuple[float, float]:
    if not 0.0 < confidence < 1.0:
        raise CCReIDError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def bootstrap_mean(values, n_resamples: int = 2000, seed: int = 0, confidence: float = 0.95) -> dict:
    """The mean of per-query values (AP, or 1.0/0.0 for a rank-1 hit) and its percentile interval."""
    values = _as_values(values, "values")
    means = _resampled_means(values, n_resamples, seed)
    low, high = _percentile_interval(means, confidence)
    return {
        "mean": float(values.mean()),
        "low": low,
        "high": high,
        "n": len(values),
        "n_resamples": n_resamples,
        "confidence": confidence,
    }


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, n_resamples: int = 2000, seed: int = 0, confidence: float = 0.95
) -> dict:
    """Mean difference b − a over the same queries (same order) and its percentile interval.

    Resampling the per-query differences is resampling the queries with both experiments kept
    together, which is what makes the bootstrap paired.
    """
    a, b = _as_values(a, "a"), _as_values(b, "b")
    if a.shape != b.shape:
        raise CCReIDError(f"paired bootstrap needs the same queries in both: got {len(a)} and {len(b)} values")
    result = bootstrap_mean(b - a, n_resamples, seed, confidence)
    result["diff"] = result.pop("mean")
    return result


def mean_std(values) -> dict:
    """Mean and sample standard deviation (ddof=1) of one metric over several seeds.

    One value has no spread to estimate: its std is reported as 0.
    """
    values = _as_values(values, "values")
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return {"mean": float(values.mean()), "std": std, "n": len(values)}

"""Uncertainty of ranking metrics over queries and training seeds (docs/report.md, "Intervals").

A 1-point mAP difference between two ablations may be noise from which queries happen to be in
the test set, or from which seed trained the model. Values come as one row per training run
(seed) and one column per query, every run on the same queries: x[i, j] = run i's AP (or rank-1
hit) on query j. The mean over the n runs and Q queries estimates the method's metric; its
variance, in a two-way crossed design (seed effect, query effect, per-run query noise), is
estimated by a t interval on the per-run means with the query sampling they do not hold added:

    V = s_runs² / n + max(0, s_query² − s_resid² / n) / Q

s_runs²: variance of the n per-run means (seed spread and each run's own query noise);
s_query²: variance over the Q queries of each query's mean over runs; s_resid²: residual mean
square of the runs × queries table (the per-run query noise, which s_query² holds once more).
The second term is the sampling of the queries' difficulty that every run shares. The interval
is mean ± t(df) · √V, df Satterthwaite's (seed term on n − 1, query term on Q − 1) with the seed
term counted at its upper 80 % bound (`_satterthwaite`), so that with two or three seeds t's
wide quantiles keep the level. One run: s_query² / Q, df = Q − 1, an interval over queries that
ignores training variance.

A difference b − a trained from the same seeds (run i of both from the same initial weights and
batches) is the same formula on the per-run differences. Otherwise each experiment brings its
own per-run term and the query term is over each query's difference of run means (Welch); an
experiment with one run borrows its partner's per-run spread, so that a single run is never
compared as if it had no training variance.

numpy has no Student-t quantile and scipy is no dependency (only optional extras of other
packages name it): `student_t_cdf` evaluates it through the regularised incomplete beta function
(Lentz's continued fraction), `student_t_quantile` inverts it by Newton's method.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

from ccreid.core.errors import CCReIDError

MIN_QUERIES = 2  # a variance over queries needs two
POWER = 0.8  # the power of the minimum detectable effect
MAX_SEEDS = 1000  # the largest seed count `seeds_needed` looks at
DF_BOUND = 0.2  # Satterthwaite's df counts each per-run variance at its upper 80 % bound (`_satterthwaite`)

_CF_TINY = 1e-300
_CF_EPS = 1e-15
_CF_MAX_ITER = 2000
_MAX_DF = 1e6  # beyond it t's quantiles equal the normal's to 1e-6; the continued fraction slows with df


# --- Student's t -----------------------------------------------------------------------------
_lgamma = np.vectorize(math.lgamma, otypes=[float])


def _beta_fraction(a: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The continued fraction of I_x(a, b) (modified Lentz), every element until it converges;
    fast for x < (a + 1) / (a + b + 2)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = np.ones_like(x)
    d = 1.0 - qab * x / qap
    d = 1.0 / np.where(np.abs(d) < _CF_TINY, _CF_TINY, d)
    h = d.copy()
    active = np.ones(x.shape, dtype=bool)
    for m in range(1, _CF_MAX_ITER + 1):
        m2 = 2 * m
        for numerator in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / np.where(np.abs(d) < _CF_TINY, _CF_TINY, d)
            c = 1.0 + numerator / c
            c = np.where(np.abs(c) < _CF_TINY, _CF_TINY, c)
            step = np.where(active, d * c, 1.0)
            h = h * step
        active &= np.abs(step - 1.0) > _CF_EPS
        if not active.any():
            return h
    raise ArithmeticError("the incomplete beta continued fraction did not converge")


def _incomplete_beta(a: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Regularised incomplete beta I_x(a, b) for a, b > 0 and 0 ≤ x ≤ 1, with y = 1 − x given
    exactly (1 − x computed from x near 1 would lose the digits that matter)."""
    swap = x > (a + 1.0) / (a + b + 2.0)  # I_x(a, b) = 1 − I_y(b, a): the fraction's fast side
    a, b, x, y = np.where(swap, b, a), np.where(swap, a, b), np.where(swap, y, x), np.where(swap, x, y)
    with np.errstate(divide="ignore"):
        log_front = a * np.log(x) + b * np.log(y) - (_lgamma(a) + _lgamma(b) - _lgamma(a + b))
    value = np.where(x > 0.0, np.exp(log_front) * _beta_fraction(a, b, x) / a, 0.0)
    return np.where(swap, 1.0 - value, value)


def _upper_tail(t: np.ndarray, df: np.ndarray) -> np.ndarray:
    """P(T > t) for t ≥ 0."""
    return 0.5 * _incomplete_beta(df / 2.0, np.full_like(df, 0.5), df / (df + t * t), t * t / (df + t * t))


def student_t_cdf(t, df):
    """P(T ≤ t) for Student's t with `df` (> 0, not necessarily whole) degrees of freedom."""
    t, df = np.broadcast_arrays(np.asarray(t, dtype=float), np.minimum(np.asarray(df, dtype=float), _MAX_DF))
    tail = _upper_tail(np.abs(t), df)
    result = np.where(t >= 0.0, 1.0 - tail, tail)
    return result if result.ndim else float(result)


def _student_t_density(t: np.ndarray, df: np.ndarray) -> np.ndarray:
    log_norm = _lgamma((df + 1.0) / 2.0) - _lgamma(df / 2.0) - 0.5 * np.log(df * math.pi)
    return np.exp(log_norm - (df + 1.0) / 2.0 * np.log1p(t * t / df))


_normal_quantile = np.vectorize(NormalDist().inv_cdf, otypes=[float])


def student_t_quantile(p, df):
    """The t with P(T ≤ t) = p (0 < p < 1) for `df` ≥ 1 degrees of freedom.

    Newton's method on log P(T > t) against log t (near linear in the tails, where Newton on the
    tail itself only doubles t per step), kept inside the bracket [z, Cauchy's quantile] (the
    normal's and df = 1's quantiles, between which every t quantile with df ≥ 1 lies; a step that
    would leave it bisects instead), from the Cornish–Fisher expansion in 1/df (Abramowitz &
    Stegun 26.7.5). The tail, not 1 − CDF, keeps far quantiles exact; the lower half by symmetry."""
    p, df = np.broadcast_arrays(np.asarray(p, dtype=float), np.minimum(np.asarray(df, dtype=float), _MAX_DF))
    if np.any(~((p > 0.0) & (p < 1.0))) or np.any(~(df >= 1.0)):
        raise ValueError(f"student_t_quantile needs 0 < p < 1 and df >= 1, got p={p}, df={df}")
    target = np.minimum(p, 1.0 - p)
    result = np.zeros(target.shape)
    tails = target < 0.5  # the median is 0
    target, v = target[tails], df[tails]
    low = _normal_quantile(1.0 - target)
    high = np.tan(math.pi * (0.5 - target))
    z = low
    t = z + (z**3 + z) / (4 * v) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
    t = np.clip(t + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3), low, high)
    for _ in range(100):
        tail = _upper_tail(t, v)
        low, high = np.where(tail > target, t, low), np.where(tail > target, high, t)
        newton = t * np.exp((np.log(tail) - np.log(target)) * tail / (_student_t_density(t, v) * t))
        following = np.where((newton > low) & (newton < high), newton, 0.5 * (low + high))
        if np.all(np.abs(following - t) <= 1e-10 * t):  # lgamma sums at large df: the tail to ~1e-11
            t = following
            break
        t = following
    else:
        raise ArithmeticError("student_t_quantile: Newton's method did not converge")
    result[tails] = t
    result = np.where(p >= 0.5, result, -result)
    return result if result.ndim else float(result)


# --- variance of a runs × queries mean -------------------------------------------------------
def _as_values(values, label: str) -> np.ndarray:
    """Per-query values as (…, runs, queries); a 1-D array is one run."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim < 2 or array.shape[-2] < 1:
        raise CCReIDError(f"{label}: expected per-query values (1-D, or runs × queries), got shape {np.shape(values)}")
    if array.shape[-1] < MIN_QUERIES:
        raise CCReIDError(
            f"{label}: {array.shape[-1]} answered queries; an interval needs at least {MIN_QUERIES} "
            "(a variance over queries): evaluate on a test set with more queries"
        )
    if not np.isfinite(array).all():
        raise CCReIDError(f"{label}: contains NaN or infinite per-query values; re-run `ccreid evaluate`")
    return array


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise CCReIDError(f"confidence must lie strictly between 0 and 1, got {confidence}")


@dataclass(frozen=True)
class _Table:
    """Mean squares of one runs × queries table (arrays over any leading axes)."""

    runs: int
    queries: int
    mean: np.ndarray
    run_var: np.ndarray  # s_runs²: variance of the per-run means (seed spread + per-run query noise / Q)
    query_var: np.ndarray  # s_query²: variance over queries of each query's mean over runs
    resid_var: np.ndarray  # s_resid²: per-run query noise (residual mean square); 0 for one run

    @classmethod
    def of(cls, x: np.ndarray) -> _Table:
        runs, queries = x.shape[-2:]
        run_means, query_means = x.mean(axis=-1), x.mean(axis=-2)
        mean = run_means.mean(axis=-1)
        query_var = query_means.var(axis=-1, ddof=1)
        if runs == 1:
            zero = np.zeros_like(mean)
            return cls(runs, queries, mean, zero, query_var, zero)
        resid = x - run_means[..., :, None] - query_means[..., None, :] + mean[..., None, None]
        resid_var = (resid * resid).sum(axis=(-2, -1)) / ((runs - 1) * (queries - 1))
        return cls(runs, queries, mean, run_means.var(axis=-1, ddof=1), query_var, resid_var)


@dataclass(frozen=True)
class _Spread:
    """A mean's (or a difference's) variance as terms with their degrees of freedom, and how it
    would shrink with more seeds: `per_seed / seeds + fixed`."""

    terms: tuple[tuple[np.ndarray, float], ...]  # (variance, df): seed terms, then the query term
    per_seed: np.ndarray  # the variance of one run's mean (one per experiment, summed): averages down
    fixed: np.ndarray  # query sampling of what every run shares (the queries' difficulty): stays
    queries: int
    seeded: bool  # whether seed spread is in the variance (at least one experiment with 2+ runs)

    @property
    def variance(self) -> np.ndarray:
        return np.sum([variance for variance, _ in self.terms], axis=0)

    @property
    def df(self) -> np.ndarray:
        return _satterthwaite(self.terms, seed_terms=len(self.terms) - 1)


def _chi2_quantile(df: float, p: float) -> float:
    """The p-quantile of χ² with a whole number `df` of degrees of freedom: exact for 1 and 2,
    Wilson–Hilferty's cube-root normal approximation above (within 1.2 % from df 3 at p 0.25)."""
    z = NormalDist().inv_cdf(p)
    if df == 1:
        return NormalDist().inv_cdf((1.0 + p) / 2.0) ** 2
    if df == 2:
        return -2.0 * math.log1p(-p)
    return df * (1.0 - 2.0 / (9.0 * df) + z * math.sqrt(2.0 / (9.0 * df))) ** 3


def _satterthwaite(terms, seed_terms: int = 0) -> np.ndarray:
    """Satterthwaite's df of a sum of variance terms (variance, df). The first `seed_terms` enter at
    their upper (1 − DF_BOUND) confidence bound, variance · df / χ²_df(DF_BOUND): a seed variance
    estimated small by chance (with 2 seeds, 1 df, often) would otherwise lend the whole sum the
    query term's many degrees of freedom and a normal quantile, and mark noise (up to 12.6 % at
    a nominal 5 % with 2 seeds; benchmarks/README.md, "Interval calibration")."""
    terms = [
        (variance * df / _chi2_quantile(df, DF_BOUND) if i < seed_terms else variance, df)
        for i, (variance, df) in enumerate(terms)
    ]
    total = sum(variance for variance, _ in terms)
    spread = sum(variance * variance / df for variance, df in terms)
    with np.errstate(invalid="ignore", divide="ignore"):
        df = np.where(spread > 0, total * total / np.where(spread > 0, spread, 1.0), max(df for _, df in terms))
    return np.maximum(df, 1.0)


def _one_table(table: _Table) -> _Spread:
    """The mean of one table (one experiment, or per-seed differences of a pair)."""
    n, q = table.runs, table.queries
    if n == 1:
        zero = np.zeros_like(table.query_var)
        return _Spread(((table.query_var / q, float(q - 1)),), zero, table.query_var / q, q, seeded=False)
    shared = np.maximum(table.query_var - table.resid_var / n, 0.0) / q  # s_runs² holds the rest
    return _Spread(((table.run_var / n, float(n - 1)), (shared, float(q - 1))), table.run_var, shared, q, True)


def _two_tables(a: _Table, b: _Table, query_var_of_difference: np.ndarray) -> _Spread:
    """The difference of two tables' means whose runs are not paired (Welch): each side's per-run
    spread, and query sampling of each query's difference of run means less the per-run noise
    the per-run spreads hold. A one-run side takes the other's per-run spread and noise (the same
    spread assumed for both)."""
    q = a.queries
    if a.runs == 1 and b.runs == 1:
        zero = np.zeros_like(query_var_of_difference)
        return _Spread(((query_var_of_difference / q, float(q - 1)),), zero, query_var_of_difference / q, q, False)
    if a.runs == 1 or b.runs == 1:
        several = a if a.runs > 1 else b
        run_var, noise = (several.run_var,) * 2, (several.resid_var,) * 2
        seed_terms: tuple[tuple[np.ndarray, float], ...] = (
            (several.run_var * (1.0 / a.runs + 1.0 / b.runs), float(several.runs - 1)),
        )
    else:
        run_var, noise = (a.run_var, b.run_var), (a.resid_var, b.resid_var)
        seed_terms = tuple((var / side.runs, float(side.runs - 1)) for var, side in zip(run_var, (a, b)))
    shared = np.maximum(query_var_of_difference - noise[0] / a.runs - noise[1] / b.runs, 0.0) / q
    return _Spread(seed_terms + ((shared, float(q - 1)),), run_var[0] + run_var[1], shared, q, True)


@dataclass(frozen=True)
class Interval:
    """A mean or a difference with its t interval (floats, or arrays over batched leading axes)."""

    estimate: np.ndarray | float
    low: np.ndarray | float
    high: np.ndarray | float
    se: np.ndarray | float
    df: np.ndarray | float
    confidence: float
    runs: tuple[int, ...]  # per experiment: (runs,) for a mean, (runs of a, runs of b) for a difference
    seed_spread: bool  # seed-to-seed variance is in it; False: over queries only (one run each)
    same_seeds: bool = False  # a difference over per-seed differences (runs paired by seed)
    borrowed: bool = False  # a one-run side took its partner's seed spread
    spread: _Spread | None = field(default=None, repr=False, compare=False)

    @property
    def excludes_zero(self):
        return (np.asarray(self.low) > 0) | (np.asarray(self.high) < 0)

    def minimum_detectable(self, power: float = POWER) -> float:
        """The smallest true effect this comparison's two-sided test finds with probability
        `power`: (t(1 − α/2) + t(power)) · SE at its df (the usual normal-theory approximation)."""
        return float(self._detectable(float(self.se), float(self.df), power))

    def seeds_needed(self, effect: float, power: float = POWER) -> int | None:
        """Runs per experiment at which a true difference of `effect` is found with `power`, from
        the measured spread (seed variance, per-run query noise, query sampling); None when one
        run each measured no seed spread, or when no count up to MAX_SEEDS gets there (query
        sampling alone is too wide: more queries are needed, not more seeds)."""
        spread = self.spread
        if spread is None or not spread.seeded:
            return None
        sides = 1 if self.same_seeds or len(self.runs) == 1 else 2

        def detectable(seeds: int) -> float:
            seed_var = float(spread.per_seed) / seeds
            terms = [(seed_var / sides, float(seeds - 1))] * sides + [(float(spread.fixed), spread.queries - 1.0)]
            se = math.sqrt(seed_var + float(spread.fixed))
            return self._detectable(se, float(_satterthwaite(terms, seed_terms=sides)), power)

        if detectable(MAX_SEEDS) > effect:
            return None
        low, high = 2, MAX_SEEDS  # detectable at `high`: find the first count that is
        while low < high:
            middle = (low + high) // 2
            low, high = (middle + 1, high) if detectable(middle) > effect else (low, middle)
        return low

    def query_floor(self, power: float = POWER) -> float | None:
        """The detectable effect with unlimited seeds: what sampling the queries' shared difficulty
        leaves (None where one run each measured no seed spread to separate it from)."""
        spread = self.spread
        if spread is None or not spread.seeded:
            return None
        return self._detectable(math.sqrt(float(spread.fixed)), spread.queries - 1.0, power)

    def _detectable(self, se: float, df: float, power: float) -> float:
        return float((student_t_quantile(0.5 + self.confidence / 2.0, df) + student_t_quantile(power, df)) * se)


def _interval(estimate: np.ndarray, spread: _Spread, confidence: float, runs: tuple[int, ...], **kind) -> Interval:
    df = spread.df
    se = np.sqrt(spread.variance)
    half = student_t_quantile(0.5 + confidence / 2.0, df) * se
    return Interval(
        _plain(estimate),
        _plain(estimate - half),
        _plain(estimate + half),
        _plain(se),
        _plain(df),
        confidence,
        runs,
        spread.seeded,
        spread=spread,
        **kind,
    )


def _plain(value):
    value = np.asarray(value)
    return float(value) if value.ndim == 0 else value


def mean_interval(values, confidence: float = 0.95, label: str = "values") -> Interval:
    """The mean of per-query values (AP, or 1.0/0.0 for a rank-1 hit; runs × queries for several
    seeds, any leading axes batched) and its t interval: over seeds and queries with two or
    more runs, over queries only with one (`seed_spread` False)."""
    _check_confidence(confidence)
    values = _as_values(values, label)
    table = _Table.of(values)
    return _interval(table.mean, _one_table(table), confidence, (table.runs,))


def difference_interval(
    a, b, confidence: float = 0.95, same_seeds: bool = False, labels: tuple[str, str] = ("a", "b")
) -> Interval:
    """Mean difference b − a over the same queries (same order; runs × queries for several seeds,
    any leading axes batched) and its t interval.

    `same_seeds`: row i of `a` and of `b` were trained from the same seed (same initial weights and
    batches), so the per-seed differences are what varies. Otherwise the two may have different
    numbers of runs, and a one-run side borrows the other's seed spread (`borrowed`).
    """
    _check_confidence(confidence)
    a, b = _as_values(a, labels[0]), _as_values(b, labels[1])
    if a.shape[-1] != b.shape[-1]:
        raise CCReIDError(
            f"{labels[0]} and {labels[1]}: a difference needs the same queries in both, got "
            f"{a.shape[-1]} and {b.shape[-1]} values; evaluate both on the same data set version"
        )
    runs = (a.shape[-2], b.shape[-2])
    if same_seeds and runs[0] != runs[1]:
        raise CCReIDError(
            f"{labels[0]} and {labels[1]}: runs paired by seed need as many runs in both, got {runs[0]} and {runs[1]}"
        )
    if same_seeds:
        table = _Table.of(b - a)
        return _interval(table.mean, _one_table(table), confidence, runs, same_seeds=True)
    first, second = _Table.of(a), _Table.of(b)
    per_query = (b.mean(axis=-2) - a.mean(axis=-2)).var(axis=-1, ddof=1)
    borrowed = min(runs) == 1 < max(runs)
    return _interval(
        second.mean - first.mean, _two_tables(first, second, per_query), confidence, runs, borrowed=borrowed
    )


def mean_std(values) -> dict:
    """Mean and sample standard deviation (ddof=1) of one metric over several seeds.

    One value has no spread to estimate: its std is reported as 0.
    """
    matrix = np.asarray(values, dtype=np.float64)
    if matrix.ndim != 1 or matrix.size == 0 or not np.isfinite(matrix).all():
        raise CCReIDError(f"values: expected one finite value per seed (1-D), got {values!r}")
    std = float(matrix.std(ddof=1)) if len(matrix) > 1 else 0.0
    return {"mean": float(matrix.mean()), "std": std, "n": len(matrix)}

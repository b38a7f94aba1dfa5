"""Calibration and power of the report's 95 % intervals and `*` (ccreid.evaluation.stats).

Null pairs of experiments from the hierarchical model of tests/test_stats.py (imported from
there: query difficulty shared by both experiments, a per-experiment query effect, a seed
effect per run, per-query noise; runs paired by seed share half of their seed effect and noise),
in its two regimes (2,000 queries where the seeds decide, the demo's 140 where the queries do),
with 2, 3, 5 and 10 seeds per experiment, paired by seed and not. Per cell:
- the false-positive rate of the `*` (the interval of b − a excludes 0 although b and a are the
  same method; nominal 5 %) and its binomial standard error;
- the power against a true difference of one seed standard deviation (the regime's seed_sd),
  the same pairs shifted;
- the mean interval width (pp).
The test (tests/test_stats.py) asserts the false-positive bound; this prints the table for
benchmarks/README.md, "Interval calibration".

    nice python benchmarks/interval_calibration.py [--trials 4000] [--power-trials 4000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from common import test_helpers

helpers = test_helpers()  # the tests' null simulation, shared


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4000, help="null pairs per cell")
    parser.add_argument("--power-trials", type=int, default=4000, help="shifted pairs per cell")
    parser.add_argument("--seed", type=int, default=2029)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"{args.trials} null and {args.power_trials} shifted pairs per cell; effect = 1 seed sd")
    print(
        "| regime (queries, seed sd) | seeds | paired by seed | false positives (nominal 5 %) | power at 1 seed sd | mean width (pp) |"
    )
    print("|---|---:|---|---:|---:|---:|")
    start = time.perf_counter()
    for name, regime in helpers.REGIMES.items():
        for seeds in helpers.SEEDS:
            for paired in (True, False):
                null = helpers.rejection_rate(regime, seeds, paired, args.trials, rng)
                power = helpers.rejection_rate(regime, seeds, paired, args.power_trials, rng, effect=regime["seed_sd"])
                se = (null["rate"] * (1 - null["rate"]) / args.trials) ** 0.5
                print(
                    f"| {name} ({regime['queries']}, {100 * regime['seed_sd']:g} pp) | {seeds} | "
                    f"{'yes' if paired else 'no'} | {100 * null['rate']:.2f} % ± {100 * se:.2f} | "
                    f"{100 * power['rate']:.1f} % | {100 * null['width']:.2f} |",
                    flush=True,
                )
    print(f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

"""The report's inputs: each experiment's evaluation output (``<results_dir>/<run>/metrics.json``
and ``per_query.csv``, one run per training seed), the protocols' roles, and the test curve
training wrote (``test_curve.json``). Every file is checked as it is read: a bad one is an error
naming it."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ccreid.core.config import model_owner
from ccreid.core.errors import CCReIDError
from ccreid.core.paths import METRICS, PER_QUERY


@dataclass
class Result:
    """One run's evaluation output."""

    metrics: dict
    per_query: pd.DataFrame
    per_query_path: Path
    seed: int | None = None  # the run's train.seed, where the data set is configured

    @property
    def run(self) -> str:
        """The run's name: its results folder (`212`, `212@2`)."""
        return self.per_query_path.parent.name

    def queries(self, protocol: str) -> pd.DataFrame:
        """Every query of a multi-shot protocol by path: ap (NaN when skipped) and first_rank."""
        table = self.per_query[self.per_query["protocol"] == protocol]
        if table.empty:
            raise CCReIDError(
                f"{self.per_query_path}: no rows for protocol {protocol!r} although {METRICS} "
                "has it; re-run `ccreid evaluate`"
            )
        repeated = table["path"][table["path"].duplicated()]
        if not repeated.empty:
            raise CCReIDError(
                f"{self.per_query_path}: query {repeated.iloc[0]!r} appears twice in protocol {protocol!r}; "
                "re-run `ccreid evaluate`"
            )
        answered = table["ap"].notna()
        missing = answered & ~np.isfinite(table["first_rank"].to_numpy(dtype=float))
        if missing.any() or not np.isfinite(table["ap"][answered].to_numpy(dtype=float)).all():
            bad = table["path"][missing].iloc[0] if missing.any() else "an answered query"
            raise CCReIDError(
                f"{self.per_query_path}: {protocol!r} query {bad!r} has an AP but no valid first_rank "
                "(or an infinite AP); re-run `ccreid evaluate`"
            )
        return table.set_index("path")[["ap", "first_rank"]]


@dataclass(frozen=True)
class Protocols:
    main: str  # cc when the data set has it: the one the intervals and differences are about
    second: str | None  # sc, else standard
    single_shot: tuple[str, ...]


@dataclass(frozen=True)
class Results:
    """What one report is about: its experiments (the table's rows, in order), the runs of those
    that have results, the protocols' roles and the run whose model each experiment uses."""

    dataset: str
    on_dataset: str | None  # the data set where params.yaml configures it (its seeds, its overrides)
    results_dir: Path
    experiments: list[str]
    runs: dict[str, list[Result]]  # by experiment with results: one per training seed, its own first
    protocols: Protocols
    owners: dict[str, str]  # ccreid.core.config.model_owner: 210 → 209

    @property
    def run_names(self) -> list[str]:
        return [result.run for runs in self.runs.values() for result in runs]


def load_results(dataset: str, params, results_dir: Path, experiments: list[str] | None = None) -> Results:
    """The results of `experiments` (default: the registry) under `results_dir`; those without a
    metrics.json are not run. At least one must have results."""
    experiments = experiments or params.experiments
    for exp in experiments:
        params.entry(exp)  # an unknown id is an error naming it
    first = {exp: result for exp in experiments if (result := _load_result(results_dir / exp)) is not None}
    if not first:
        raise CCReIDError(
            f"{results_dir}: no experiment has a {METRICS} yet; run the pipeline for data set "
            f"{dataset!r} first (e.g. `snakemake --cores all "
            f"results/{dataset}/{params.default.baseline}/metrics.json`)"
        )
    on_dataset = dataset if dataset in params.datasets else None

    def seeded(result: Result, run: str) -> Result:
        return replace(result, seed=params.run_config(dataset, run).train.seed) if on_dataset else result

    runs = {
        exp: [
            seeded(result, exp),
            *(
                seeded(r, run)
                for run in params.runs(exp, on_dataset)[1:]
                if (r := _load_result(results_dir / run)) is not None
            ),
        ]
        for exp, result in first.items()
    }
    # Entries that resolve to one training share its model: evaluation-only variants (210),
    # and entries whose readings train the same network.
    owners = {exp: model_owner(params, dataset, exp) if on_dataset else exp for exp in experiments}
    return Results(dataset, on_dataset, results_dir, list(experiments), runs, _pick_protocols(first), owners)


def _load_result(exp_dir: Path) -> Result | None:
    metrics_path, per_query_path = exp_dir / METRICS, exp_dir / PER_QUERY
    if not metrics_path.is_file():
        return None
    if not per_query_path.is_file():
        raise CCReIDError(f"{per_query_path}: missing beside {metrics_path}; re-run `ccreid evaluate`")
    try:
        metrics = json.loads(metrics_path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CCReIDError(f"{metrics_path}: not readable JSON ({error}); re-run `ccreid evaluate`") from None
    try:
        per_query = pd.read_csv(per_query_path, dtype={"protocol": str, "path": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise CCReIDError(f"{per_query_path}: not a readable CSV ({error}); re-run `ccreid evaluate`") from None
    missing = {"protocol", "path", "ap", "first_rank"} - set(per_query.columns)
    if missing:
        raise CCReIDError(f"{per_query_path}: missing column(s) {sorted(missing)}; re-run `ccreid evaluate`")
    for column in ("ap", "first_rank"):
        if not pd.api.types.is_numeric_dtype(per_query[column]):
            raise CCReIDError(f"{per_query_path}: column {column!r} holds non-numbers; re-run `ccreid evaluate`")
    return Result(metrics, per_query, per_query_path)


def _pick_protocols(results: dict[str, Result]) -> Protocols:
    """Protocol roles from the names in metrics.json; single-shot entries carry `trials`."""
    single_shot: dict[str, bool] = {}
    for result in results.values():
        for name, values in result.metrics.items():
            single_shot.setdefault(name, "trials" in values)
    multi_shot = [name for name, single in single_shot.items() if not single]
    if not multi_shot:
        raise CCReIDError("no multi-shot protocol in any metrics.json: nothing to report")
    main = "cc" if "cc" in multi_shot else multi_shot[0]
    second = next((name for name in ("sc", "standard") if name in multi_shot and name != main), None)
    return Protocols(main, second, tuple(name for name, single in single_shot.items() if single))


def best_on_test(curve_path: Path, main: str) -> dict:
    """The epoch of the best `main` R1 among the test evaluations during training (CAL's model
    selection), with its mAP: the figure papers report, selected on the test set."""
    if not curve_path.is_file():
        return {}
    try:
        epochs = json.loads(curve_path.read_text())["epochs"]
        best = max(epochs, key=lambda row: row[f"{main}/R1"])  # first of equal maxima, as CAL's `>`
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise CCReIDError(f"{curve_path}: not a ccreid test curve ({error}); re-run `ccreid train`") from None
    return {
        f"test_best_{main}_mAP": best[f"{main}/mAP"],
        f"test_best_{main}_R1": best[f"{main}/R1"],
        "test_best_epoch": best["epoch"],
    }

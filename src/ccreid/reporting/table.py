"""The report's table as numbers: one row per experiment, keyed by report.csv's columns, with the
main protocol's intervals over seeds and queries (ccreid.evaluation.stats), the difference to the
base experiment and what it can show, the second and single-shot protocols, the spread over seeds
and the best epoch on test. Fractions, as metrics.json; ccreid.reporting.text writes them in words."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ccreid.core.errors import CCReIDError
from ccreid.core.paths import TEST_CURVE
from ccreid.evaluation.stats import Interval, difference_interval, mean_interval, mean_std
from ccreid.reporting.results import Protocols, Result, Results, best_on_test

CONFIDENCE = 0.95
DETECT_EFFECT = 0.01  # the difference (1 pp) whose seed count the report gives
HEADLINE = ("mAP", "R1")
NOT_RUN = "not run"
QUERIES_ONLY = "queries only"


def table_rows(params, results: Results) -> list[dict]:
    """The rows of `results.experiments`, in order: experiments without results have only their
    registry entry's columns."""
    rows = []
    for exp in results.experiments:
        row = _experiment_row(exp, params.entry(exp), results.runs, results.protocols)
        owner = results.owners[exp]
        if owner != exp:
            row["note"] = f"{row['note']} [trains the same model as {owner}]".strip()
        if exp in results.runs:
            row |= _seed_columns(results.runs[exp], results.protocols.main)
            # The curve lives with the trained model, which evaluation-only variants share.
            row |= best_on_test(results.results_dir / owner / TEST_CURVE, results.protocols.main)
        rows.append(row)
    return rows


def _experiment_row(exp: str, entry: dict, runs: dict[str, list[Result]], protocols: Protocols) -> dict:
    """One experiment's table row, keyed by the CSV column names; absent keys stay empty.
    `runs`: each experiment's results, one per training seed that has them (its own first)."""
    reported = entry.get("reported") or {}
    base = str(entry["base"]) if entry.get("base") is not None else ""
    row = {
        "exp": exp,
        "note": " ".join(str(entry.get("note", "")).split()),
        "base": base,
        "status": "run" if exp in runs else NOT_RUN,
        "reported_dataset": reported.get("dataset", ""),
        "reported_mAP": reported.get("mAP"),
        "reported_R1": reported.get("R1"),
    }
    if exp not in runs:
        return row
    result = runs[exp][0]
    main = protocols.main
    mine = [run for run in runs[exp] if main in run.metrics]
    if main in result.metrics:
        (tables,) = _aligned({exp: mine}, main)
        for metric in HEADLINE:
            interval = mean_interval(_run_values(tables, metric), CONFIDENCE, label=_label(exp, mine))
            # One run: metrics.json's value; several: the mean over seeds the interval is about.
            value = result.metrics[main][metric] if len(mine) == 1 else interval.estimate
            row |= {  # a metric lies in [0, 1]: so does its interval (t's may reach past it with few seeds)
                f"{main}_{metric}": value,
                f"{main}_{metric}_low": max(interval.low, 0.0),
                f"{main}_{metric}_high": min(interval.high, 1.0),
            }
        row[f"{main}_queries"] = result.metrics[main]["queries"]
        row[f"{main}_runs"] = len(mine)
        row[f"{main}_interval"] = _interval_kind(interval)
        theirs = [run for run in runs.get(base, []) if main in run.metrics]
        if theirs:
            theirs, paired, same_seeds = _by_seed(theirs, mine)
            before, after = _aligned({base: theirs, exp: paired}, main)
            row["delta_same_seeds"] = same_seeds and len(paired) > 1
            row["delta_runs"] = f"{len(theirs)}/{len(paired)}"
            labels = (_label(base, theirs), _label(exp, paired))
            for metric in HEADLINE:
                delta = difference_interval(
                    _run_values(before, metric), _run_values(after, metric), CONFIDENCE, same_seeds, labels
                )
                key = f"delta_{main}_{metric}"
                row |= {
                    key: delta.estimate,
                    f"{key}_low": delta.low,
                    f"{key}_high": delta.high,
                    f"{key}_excludes_0": bool(delta.excludes_zero),
                    f"{key}_detectable": delta.minimum_detectable(),
                    f"{key}_seeds_for_1pp": delta.seeds_needed(DETECT_EFFECT),
                    f"{key}_query_floor": delta.query_floor(),
                }
            row["delta_interval"] = _interval_kind(delta)
    if protocols.second in result.metrics:
        row |= {f"{protocols.second}_{metric}": result.metrics[protocols.second][metric] for metric in HEADLINE}
    for name in protocols.single_shot:
        if name in result.metrics:
            values = result.metrics[name]
            row |= {f"{name}_{key}": values[key] for key in ("mAP", "mAP_std", "R1", "R1_std", "trials")}
    return row


def _seed_columns(runs: list[Result], main: str) -> dict:
    """Mean ± std over the experiment's training seeds (its runs that have results)."""
    runs = [result for result in runs if main in result.metrics]
    if len(runs) < 2:
        return {}
    row = {"seeds": len(runs)}
    for metric in HEADLINE:
        spread = mean_std([result.metrics[main][metric] for result in runs])
        row |= {f"{main}_{metric}_seeds_mean": spread["mean"], f"{main}_{metric}_seeds_std": spread["std"]}
    return row


def _aligned(groups: dict[str, list[Result]], protocol: str) -> list[list[pd.DataFrame]]:
    """Each experiment's runs' queries in one order, restricted to the answered ones. Every run
    must hold the same queries and skip the same ones (a query is skipped when the gallery has
    no true match for it: a property of the data set, not of the model)."""
    named = [(exp, run) for exp, runs in groups.items() for run in runs]
    tables = [run.queries(protocol) for _, run in named]
    (first_exp, first), reference = named[0], tables[0]
    skipped = reference["ap"].isna()
    for (exp, run), table in zip(named[1:], tables[1:]):
        where = (
            f"run {first.run} of experiment {first_exp} ({first.per_query_path}) and "
            f"run {run.run} of experiment {exp} ({run.per_query_path})"
        )
        if set(table.index) != set(reference.index):
            raise CCReIDError(
                f"{where} hold different {protocol!r} queries; were they evaluated on the same data set "
                "version? Re-run `ccreid evaluate` for both"
            )
        differs = table.loc[reference.index, "ap"].isna() != skipped
        if differs.any():
            raise CCReIDError(
                f"{where} disagree on {protocol!r} query {differs.index[differs.to_numpy()][0]!r}: one has its AP, the "
                "other none (a missing value, or another gallery); re-run `ccreid evaluate` for both"
            )
    answered = ~skipped.to_numpy()
    ordered = iter([table.loc[reference.index][answered] for table in tables])
    return [[next(ordered) for _ in runs] for runs in groups.values()]


def _by_seed(theirs: list[Result], mine: list[Result]) -> tuple[list[Result], list[Result], bool]:
    """Both experiments' runs in the order of their training seeds, and whether they ran the same
    seeds (each once): then the i-th runs started from the same weights and batches, a pair."""
    seeds = {run.seed: run for run in theirs if run.seed is not None}
    other = {run.seed: run for run in mine if run.seed is not None}
    if len(seeds) < len(theirs) or len(other) < len(mine) or seeds.keys() != other.keys():
        return theirs, mine, False
    order = sorted(seeds)
    return [seeds[seed] for seed in order], [other[seed] for seed in order], True


def _per_query_values(queries: pd.DataFrame, metric: str) -> np.ndarray:
    """What each query contributes to the metric: its AP, or 1/0 for a rank-1 hit."""
    if metric == "mAP":
        return queries["ap"].to_numpy(dtype=float)
    return (queries["first_rank"] == 0).to_numpy(dtype=float)


def _run_values(tables: list[pd.DataFrame], metric: str) -> np.ndarray:
    """Runs × queries: what each query contributes to the metric in each run."""
    return np.stack([_per_query_values(table, metric) for table in tables])


def _label(exp: str, runs: list[Result]) -> str:
    """An experiment and its per-query files, for messages about its values."""
    return f"experiment {exp} ({', '.join(str(run.per_query_path) for run in runs)})"


def _interval_kind(interval: Interval) -> str:
    """What an interval's width holds (the CSV's *_interval columns, the report's marks)."""
    if not interval.seed_spread:
        return QUERIES_ONLY
    if interval.same_seeds:
        return "seeds (paired) and queries"
    if interval.borrowed:
        return "seeds (one run: its partner's spread) and queries"
    return "seeds and queries"


def table_csv(rows: list[dict], protocols: Protocols) -> bytes:
    """report.csv: every row with every column, empty where a row has no value."""
    return pd.DataFrame(rows, columns=_csv_columns(protocols)).to_csv(index=False).encode()


def _csv_columns(protocols: Protocols) -> list[str]:
    main = protocols.main
    columns = ["exp", "note", "base", "status"]
    for metric in HEADLINE:
        columns += _interval_keys(f"{main}_{metric}")
    columns += [f"{main}_queries", f"{main}_runs", f"{main}_interval"]
    if protocols.second:
        columns += [f"{protocols.second}_{metric}" for metric in HEADLINE]
    for metric in HEADLINE:
        key = f"delta_{main}_{metric}"
        columns += _interval_keys(key) + [f"{key}_excludes_0", f"{key}_detectable", f"{key}_seeds_for_1pp"]
        columns.append(f"{key}_query_floor")
    columns += ["delta_runs", "delta_same_seeds", "delta_interval"]
    columns += ["reported_dataset", "reported_mAP", "reported_R1"]
    columns += ["seeds"] + [f"{main}_{metric}_seeds_{stat}" for metric in HEADLINE for stat in ("mean", "std")]
    columns += [f"test_best_{main}_mAP", f"test_best_{main}_R1", "test_best_epoch"]
    for name in protocols.single_shot:
        for metric in HEADLINE:
            columns += [f"{name}_{metric}", f"{name}_{metric}_std"]
        columns.append(f"{name}_trials")
    return columns


def _interval_keys(key: str) -> list[str]:
    return [key, f"{key}_low", f"{key}_high"]


def missing(value) -> bool:
    """An empty cell of a row: no value, or NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))

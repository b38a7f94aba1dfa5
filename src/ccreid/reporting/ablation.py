"""The ablation report of one data set, our numbers beside the lab log's (written by the
`report` stage).

Reads ``<results_dir>/<exp>/metrics.json`` and ``per_query.csv`` of every registered experiment
that has them (the others are listed as "not run") and writes into the output folder:

- ``report.md`` and ``report.html`` (one self-contained file, plots embedded): per experiment the
  main protocol's mAP and R1 with 95% intervals (over its seeds and the queries; one seed: over
  queries only, ccreid.evaluation.stats), the second protocol's mAP and R1, the difference to the
  base experiment with its interval, the runs behind it, the smallest difference it can find and
  the seeds a 1 pp difference would need, the single-shot results (mean ± std over draws) and the
  lab log's reported numbers; percentages.
- ``report.csv``: the same table, one row per experiment, as fractions like metrics.json.
- ``cmc.png`` (CMC curves, ranks 1–20) and ``cc_bars.png`` (main-protocol mAP and R1 per
  experiment with their intervals as error bars).
- ``jobs.csv``: run time, CPU time and peak memory of every job behind the results, from the jobs'
  benchmark files (ccreid.reporting.job_costs); kept out of the md and html, whose bytes depend on
  the results only.

A rebuild on the same results gives identical bytes.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ccreid.core.config import model_owner
from ccreid.core.errors import CCReIDError
from ccreid.core.paths import (
    CC_BARS,
    CMC_PLOT,
    FEATURES,
    LIVE_DIR,
    LOGS_DIR,
    METRICS,
    PER_QUERY,
    REPORT_CSV,
    REPORT_CURVES_DIR,
    REPORT_HTML,
    REPORT_JOBS,
    REPORT_MD,
    REPORT_RANKED_DIR,
    TEST_CURVE,
)
from ccreid.data.prepared import load_prepared
from ccreid.evaluation.features import read_features
from ccreid.evaluation.stats import MAX_SEEDS, POWER, Interval, difference_interval, mean_interval, mean_std
from ccreid.reporting.config_diff import change_lines, experiment_changes
from ccreid.reporting.job_costs import job_benchmarks, jobs_csv
from ccreid.reporting.ranked_lists import Run, multi_shot, ranked_list_png
from ccreid.reporting.training_curves import curves_png, has_history

MAX_CMC_OTHERS = 5
CMC_RANKS = np.arange(1, 21)
CONFIDENCE = 0.95
DETECT_EFFECT = 0.01  # the difference (1 pp) whose seed count the report gives
HEADLINE = ("mAP", "R1")
PROTOCOL_MEANING = {
    "cc": "clothes-changing",
    "sc": "same clothes",
    "standard": "every cross-camera match, clothes ignored",
}
NOT_RUN = "not run"
QUERIES_ONLY = "queries only"
DETECTABLE_HEADER = "Δ {main} mAP: runs base/exp; detectable at 80% power; seeds for 1 pp"


@dataclass
class Result:
    """One experiment's evaluation output."""

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


def _answered(queries: pd.DataFrame) -> pd.DataFrame:
    return queries[queries["ap"].notna()]


def _per_query_values(queries: pd.DataFrame, metric: str) -> np.ndarray:
    """What each query contributes to the metric: its AP, or 1/0 for a rank-1 hit."""
    if metric == "mAP":
        return queries["ap"].to_numpy(dtype=float)
    return (queries["first_rank"] == 0).to_numpy(dtype=float)


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


def _interval_kind(interval: Interval) -> str:
    """What an interval's width holds (the CSV's *_interval columns, the report's marks)."""
    if not interval.seed_spread:
        return QUERIES_ONLY
    if interval.same_seeds:
        return "seeds (paired) and queries"
    if interval.borrowed:
        return "seeds (one run: its partner's spread) and queries"
    return "seeds and queries"


def _label(exp: str, runs: list[Result]) -> str:
    """An experiment and its per-query files, for messages about its values."""
    return f"experiment {exp} ({', '.join(str(run.per_query_path) for run in runs)})"


def _by_seed(theirs: list[Result], mine: list[Result]) -> tuple[list[Result], list[Result], bool]:
    """Both experiments' runs in the order of their training seeds, and whether they ran the same
    seeds (each once): then the i-th runs started from the same weights and batches, a pair."""
    seeds = {run.seed: run for run in theirs if run.seed is not None}
    other = {run.seed: run for run in mine if run.seed is not None}
    if len(seeds) < len(theirs) or len(other) < len(mine) or seeds.keys() != other.keys():
        return theirs, mine, False
    order = sorted(seeds)
    return [seeds[seed] for seed in order], [other[seed] for seed in order], True


def _run_values(tables: list[pd.DataFrame], metric: str) -> np.ndarray:
    """Runs × queries: what each query contributes to the metric in each run."""
    return np.stack([_per_query_values(table, metric) for table in tables])


def _interval_keys(key: str) -> list[str]:
    return [key, f"{key}_low", f"{key}_high"]


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


def _best_on_test(curve_path: Path, main: str) -> dict:
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


# --- formatting ------------------------------------------------------------------------------
class Link(str):
    """A table cell that links to a section of the same report (#anchor)."""

    href: str

    def __new__(cls, text: str, href: str) -> Link:
        cell = super().__new__(cls, text)
        cell.href = href
        return cell


@dataclass
class Section:
    """A part of the report after the table: an anchored heading, bullet lines, images (by file name)."""

    title: str
    anchor: str = ""
    lines: tuple[str, ...] = ()
    images: tuple[str, ...] = ()
    level: int = 2


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _pct(value) -> str:
    return "" if _missing(value) else f"{100 * value:.2f}"


def _percent(key: str) -> Callable[[dict], str]:
    return lambda row: _pct(row.get(key))


def _with_interval(key: str) -> Callable[[dict], str]:
    def cell(row: dict) -> str:
        if _missing(row.get(key)):
            return ""
        return f"{_pct(row[key])} [{_pct(row[f'{key}_low'])}, {_pct(row[f'{key}_high'])}]"

    return cell


def _delta(key: str) -> Callable[[dict], str]:
    def cell(row: dict) -> str:
        if _missing(row.get(key)):
            return "base not run" if row["status"] == "run" and row["base"] else ""
        low, value, high = (100 * row[k] for k in (f"{key}_low", key, f"{key}_high"))
        marker = ""
        if row[f"{key}_excludes_0"]:
            marker = f" * ({QUERIES_ONLY})" if row["delta_interval"] == QUERIES_ONLY else " *"
        return f"{value:+.2f} [{low:+.2f}, {high:+.2f}]{marker}"

    return cell


def _detectable(key: str) -> Callable[[dict], str]:
    """Runs behind a difference, the smallest it finds with 80 % power, and the seeds 1 pp needs."""

    def cell(row: dict) -> str:
        if _missing(row.get(key)):
            return ""
        need, floor = row[f"{key}_seeds_for_1pp"], row[f"{key}_query_floor"]
        if row["delta_interval"] == QUERIES_ONLY:
            seeds = "unknown (no seed spread measured)"
        elif not _missing(need):
            seeds = f"{need} seeds each"
        elif floor > DETECT_EFFECT:
            seeds = f"no number of seeds (the queries alone: {100 * floor:.2f})"
        else:
            seeds = f"more than {MAX_SEEDS} seeds each"
        return f"{row['delta_runs']} runs; {100 * row[f'{key}_detectable']:.2f}; 1 pp: {seeds}"

    return cell


def _mean_std(key: str) -> Callable[[dict], str]:
    def cell(row: dict) -> str:
        return "" if _missing(row.get(key)) else f"{_pct(row[key])} ± {_pct(row[f'{key}_std'])}"

    return cell


def _best_on_test_cell(main: str) -> Callable[[dict], str]:
    def cell(row: dict) -> str:
        if _missing(row.get(f"test_best_{main}_R1")):
            return ""
        return f"{_pct(row[f'test_best_{main}_mAP'])} / {_pct(row[f'test_best_{main}_R1'])} @ {row['test_best_epoch']}"

    return cell


def _display_columns(
    protocols: Protocols, with_seeds: bool, with_test_curves: bool = False
) -> list[tuple[str, Callable[[dict], str]]]:
    """(header, cell formatter) of the human-readable table: report.md and report.html."""
    main, second = protocols.main, protocols.second
    main_map = _with_interval(f"{main}_mAP")
    columns = [
        ("Exp", lambda row: row["exp"]),
        ("Note", lambda row: row["note"]),
        ("Base", lambda row: row["base"]),
        (f"{main} mAP [95% CI]", lambda row: NOT_RUN if row["status"] == NOT_RUN else main_map(row)),
        (f"{main} R1 [95% CI]", _with_interval(f"{main}_R1")),
    ]
    if second:
        columns += [(f"{second} {metric}", _percent(f"{second}_{metric}")) for metric in HEADLINE]
    columns += [(f"Δ {main} {metric} vs base [95% CI]", _delta(f"delta_{main}_{metric}")) for metric in HEADLINE]
    columns += [(DETECTABLE_HEADER.format(main=main), _detectable(f"delta_{main}_mAP"))]
    columns += [
        ("Reported on", lambda row: row["reported_dataset"]),
        ("Reported mAP", lambda row: _pct(row["reported_mAP"])),
        ("Reported R1", lambda row: _pct(row["reported_R1"])),
    ]
    for name in protocols.single_shot:
        columns += [(f"{name} {metric} (mean ± std)", _mean_std(f"{name}_{metric}")) for metric in HEADLINE]
    if with_test_curves:
        columns += [(f"best on test (as CAL reports; optimistic): {main} mAP / R1 @ epoch", _best_on_test_cell(main))]
    if with_seeds:
        columns += [("Seeds", lambda row: str(row.get("seeds") or (1 if row["status"] == "run" else "")))]
        columns += [
            (f"{main} {metric} over seeds (mean ± std)", _seeds_mean_std(f"{main}_{metric}_seeds"))
            for metric in HEADLINE
        ]
    return columns


def _seeds_mean_std(key: str) -> Callable[[dict], str]:
    def cell(row: dict) -> str:
        return "" if _missing(row.get(f"{key}_mean")) else f"{_pct(row[f'{key}_mean'])} ± {_pct(row[f'{key}_std'])}"

    return cell


def _variance_note(rows: list[dict], main: str) -> str:
    """What the intervals hold, by the seeds behind each."""
    kinds = {row.get(f"{main}_interval") for row in rows} - {None}
    several = (
        "Experiments with several training seeds (column Seeds): the value is the mean over seeds and the "
        "interval holds seed-to-seed spread as well as query sampling. "
    )
    single = "Experiments with one seed: the interval is over queries only and ignores training variance."
    if kinds == {"seeds and queries"}:
        return several.rstrip()
    return (several if "seeds and queries" in kinds else "") + single


def _seed_pairing_note(rows: list[dict]) -> str:
    """How each Δ treats the seeds, naming the experiments of each kind."""
    kinds: dict[str, list[str]] = {}
    for row in rows:
        if row.get("delta_interval"):
            kinds.setdefault(row["delta_interval"], []).append(row["exp"])
    meaning = {
        "seeds (paired) and queries": "per-seed differences where both ran the same training seeds, each pair of "
        "runs from the same weights and batches",
        "seeds and queries": "each experiment's seeds on their own",
        "seeds (one run: its partner's spread) and queries": "one side ran one seed and is given the other side's "
        "seed spread",
        QUERIES_ONLY: "one seed each: over queries only, ignoring training variance; its * reads '* (queries only)'",
    }
    return "; ".join(f"{meaning[kind]}: {', '.join(exps)}" for kind, exps in kinds.items()) or "none"


def _header_lines(dataset: str, protocols: Protocols, rows: list[dict], results: dict[str, Result]) -> list[str]:
    main, second = protocols.main, protocols.second
    run = sum(row["status"] == "run" for row in rows)
    confidence = round(100 * CONFIDENCE)

    def named(protocol: str) -> str:
        meaning = PROTOCOL_MEANING.get(protocol)
        return f"{protocol} ({meaning})" if meaning else protocol

    multi = named(main) + (f" and {named(second)}" if second else "")
    if protocols.single_shot:
        trials = sorted(
            {r.metrics[name]["trials"] for r in results.values() for name in protocols.single_shot if name in r.metrics}
        )
        single = (
            f"Single-shot protocols (one random gallery image per identity, mean ± std over "
            f"{'/'.join(map(str, trials))} seeded draws): {', '.join(protocols.single_shot)}."
        )
    else:
        single = "Single-shot protocols: none evaluated."
    return [
        f"Data set: {dataset}; {run} of {len(rows)} registered experiments have results.",
        f"Multi-shot protocols (whole gallery): {multi}. {single}",
        f"All numbers are percentages. [low, high]: {confidence}% t interval on the per-seed means with the "
        f"sampling variance of the queries' shared difficulty added, Satterthwaite's degrees of freedom "
        f"(docs/report.md, 'Intervals'). " + _variance_note(rows, main),
        f"Δ vs base: difference to the base experiment in {main} over the same queries, with a {confidence}% "
        f"interval of the same kind ({_seed_pairing_note(rows)}); * marks an interval that excludes 0.",
        f"What a Δ can show ({main} mAP): the runs behind it (base/experiment), the smallest true difference "
        f"it finds with {round(100 * POWER)}% power at {confidence}% from the measured spread, and the seeds "
        f"per experiment at which a {round(100 * DETECT_EFFECT)} pp difference would be found (unknown with "
        f"one seed each: no seed spread measured; none where sampling the queries alone hides it).",
        f"Reported: the lab log's numbers (clothes-changing setting) on the data set in 'Reported on'; "
        f"they are not comparable with ours where that data set is not {dataset}.",
    ] + (
        [
            f"Best on test: the test protocols evaluated during training (eval.test_every); the epoch with the "
            f"best {main} R1 and its mAP, as CAL selects and papers report. Selected on the test set, so "
            f"optimistic; the other columns are the last epoch's model."
        ]
        if any(row.get("test_best_epoch") for row in rows)
        else []
    )


def _markdown(
    title: str, header: list[str], table: list[list[str]], images: list[str], sections: tuple[Section, ...] = ()
) -> str:
    def md_cell(cell: str) -> str:
        text = cell.replace("|", "\\|")
        return f"[{text}]({cell.href})" if isinstance(cell, Link) else text

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(md_cell(cell) for cell in cells) + " |"

    lines = [f"# {title}", ""] + [f"- {item}" for item in header] + [""]
    lines += [line(table[0]), "|" + "---|" * len(table[0])] + [line(cells) for cells in table[1:]]
    lines += [""] + [f"![{name}]({name})" for name in images]
    for section in sections:
        anchor = f'<a id="{section.anchor}"></a>' if section.anchor else ""
        lines += ["", f"{'#' * section.level} {anchor}{section.title}", ""]
        lines += [f"- {item}" for item in section.lines] + [f"![{name}]({name})" for name in section.images]
    return "\n".join(lines) + "\n"


def _html(
    title: str,
    header: list[str],
    table: list[list[str]],
    images: dict[str, bytes],
    sections: tuple[Section, ...] = (),
    section_images: dict[str, bytes] | None = None,
) -> str:
    def html_cell(value: str) -> str:
        text = html.escape(value)
        return f'<a href="{html.escape(value.href)}">{text}</a>' if isinstance(value, Link) else text

    def cells(tag: str, values: list[str]) -> str:
        return "<tr>" + "".join(f"<{tag}>{html_cell(value)}</{tag}>" for value in values) + "</tr>"

    body = [f"<h1>{html.escape(title)}</h1>", "<ul>"] + [f"<li>{html.escape(item)}</li>" for item in header]
    body += ["</ul>", "<table>", cells("th", table[0])] + [cells("td", row) for row in table[1:]] + ["</table>"]
    body += [
        f'<p><img alt="{name}" src="data:image/png;base64,{base64.b64encode(png).decode()}"></p>'
        for name, png in images.items()
    ]
    for section in sections:
        anchor = f' id="{html.escape(section.anchor)}"' if section.anchor else ""
        tag = f"h{section.level}"
        body.append(f"<{tag}{anchor}>{html.escape(section.title)}</{tag}>")
        if section.lines:
            body += ["<ul>"] + [f"<li>{html.escape(item)}</li>" for item in section.lines] + ["</ul>"]
        body += [
            f'<p><img alt="{html.escape(name)}" src="data:image/png;base64,'
            f'{base64.b64encode((section_images or {})[name]).decode()}"></p>'
            for name in section.images
        ]
    style = (
        "body{font-family:sans-serif;margin:1.5em} table{border-collapse:collapse;font-size:0.85em}"
        " th,td{border:1px solid #bbb;padding:0.25em 0.5em;vertical-align:top} th{background:#eee}"
        " td:nth-child(2){max-width:28em} img{max-width:100%}"
    )
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{style}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


# --- plots -----------------------------------------------------------------------------------
def _png(figure: Figure) -> bytes:
    # No "Software" entry (it carries the matplotlib version): same plot, same bytes.
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, metadata={"Software": None})
    return buffer.getvalue()


def _cmc(queries: pd.DataFrame) -> np.ndarray:
    first = _answered(queries)["first_rank"].to_numpy()
    return (first[:, None] < CMC_RANKS[None, :]).mean(axis=0)


def _cmc_experiments(rows: list[dict], protocols: Protocols, requested: list[str] | None, baseline: str) -> list[str]:
    """The requested experiments, or the baseline and the best others by main-protocol mAP."""
    key = f"{protocols.main}_mAP"
    plotted = [row for row in rows if not _missing(row.get(key))]
    if requested is not None:
        available = {row["exp"] for row in plotted}
        for exp in requested:
            if exp not in available:
                raise CCReIDError(f"CMC plot: experiment {exp!r} has no {protocols.main!r} results to plot")
        return list(requested)
    others = sorted((row for row in plotted if row["exp"] != baseline), key=lambda row: -row[key])
    return [row["exp"] for row in plotted if row["exp"] == baseline] + [row["exp"] for row in others[:MAX_CMC_OTHERS]]


def _cmc_figure(dataset: str, protocol: str, curves: dict[str, np.ndarray], baseline: str) -> Figure:
    figure = Figure(figsize=(8.5, 5), layout="constrained")
    axes = figure.add_subplot()
    for exp, cmc in curves.items():
        bold = exp == baseline
        axes.plot(
            CMC_RANKS,
            100 * cmc,
            marker="o",
            markersize=3,
            label=f"{exp}{' (baseline)' if bold else ''}: R1 {100 * cmc[0]:.1f}%",
            color="black" if bold else None,
            linestyle="--" if bold else None,
            linewidth=2 if bold else None,
        )
    axes.set_xticks([1, 5, 10, 15, 20])
    axes.set_xlim(1, CMC_RANKS[-1])
    axes.set_ylim(0, min(100, 100 * max(cmc[-1] for cmc in curves.values()) + 5))
    axes.set_xlabel("Rank")
    axes.set_ylabel("Matching rate (%)")
    axes.set_title(f"CMC, {protocol} protocol, data set {dataset}")
    axes.grid(alpha=0.3)
    # Outside the axes: CMC curves may fill any corner, depending on how hard the protocol is.
    axes.legend(title="Experiment", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return figure


def _bars_figure(dataset: str, protocol: str, rows: list[dict]) -> Figure:
    figure = Figure(figsize=(max(7.5, 0.6 * len(rows) + 2), 5), layout="constrained")
    axes = figure.add_subplot()
    positions, width = np.arange(len(rows)), 0.4
    tops = []
    for offset, metric in ((-width / 2, "mAP"), (width / 2, "R1")):
        key = f"{protocol}_{metric}"
        values = np.array([100 * row[key] for row in rows])
        # The point estimate is metrics.json's; rounding in per_query.csv can put it a hair
        # outside the interval, and matplotlib refuses negative error bars.
        below = np.clip(values - [100 * row[f"{key}_low"] for row in rows], 0, None)
        above = np.clip([100 * row[f"{key}_high"] for row in rows] - values, 0, None)
        axes.bar(positions + offset, values, width, yerr=[below, above], capsize=3, label=metric)
        tops.append(max(values + above))
    runs = [row[f"{protocol}_runs"] for row in rows]
    axes.set_xticks(positions, [f"{row['exp']}\n{n} seed{'s' if n > 1 else ''}" for row, n in zip(rows, runs)])
    # At least four slots wide, centred: one or two experiments would otherwise get huge bars.
    centre, half_span = (len(rows) - 1) / 2, max(len(rows), 4) / 2
    axes.set_xlim(centre - half_span, centre + half_span)
    axes.set_xlabel("Experiment")
    axes.set_ylabel(f"{protocol} (%)")
    axes.set_title(
        f"{protocol} mAP and Rank-1 per experiment, data set {dataset}\n"
        f"error bars: {round(100 * CONFIDENCE)}% t interval over seeds and queries"
        + ("; with 1 seed over queries only (no training variance)" if min(runs) == 1 else "")
    )
    axes.grid(axis="y", alpha=0.3)
    axes.set_axisbelow(True)
    axes.set_ylim(0, min(100, max(1.0, 1.2 * max(tops))))  # headroom keeps the legend off the error bars
    axes.legend(ncols=2, loc="upper left")
    return figure


# --- the whole report -----------------------------------------------------------------------
@dataclass
class Report:
    """A whole report in memory: its files' contents by name (REPORT_FILES) and what it shows."""

    files: dict[str, bytes]
    protocols: Protocols
    rows: list[dict]
    cmc_experiments: list[str]


def ablation_report(
    dataset: str,
    params,
    results_dir: Path,
    cmc_experiments: list[str] | None = None,
    experiments: list[str] | None = None,
    prepared_dir: Path | None = None,
    logs_dir: Path = LOGS_DIR,
) -> Report:
    """report.md/.csv/.html, cmc.png and cc_bars.png of one data set's results, each row's config
    difference to its base, training curves (curves/<exp>.png) where training logged them and,
    with `prepared_dir`, ranked lists (ranked/<exp>_<protocol>.png) of the CMC plot's
    experiments beside their base's.

    `experiments` restricts the table to part of the registry (e.g. the lab log's gate table).
    jobs.csv holds the run time and peak memory of every job behind the results, from their
    benchmark files under `logs_dir`.
    """
    results_dir = Path(results_dir)
    baseline = params.default.baseline  # drawn first and in bold in the CMC plot
    experiments = experiments or params.experiments
    for exp in experiments:
        params.entry(exp)  # an unknown id is an error naming it
    results = {exp: result for exp in experiments if (result := _load_result(results_dir / exp)) is not None}
    if not results:
        raise CCReIDError(
            f"{results_dir}: no experiment has a {METRICS} yet; run the pipeline for data set "
            f"{dataset!r} first (e.g. `snakemake --cores all results/{dataset}/{baseline}/metrics.json`)"
        )
    protocols = _pick_protocols(results)
    on_dataset = dataset if dataset in params.datasets else None

    def seeded(result: Result, run: str) -> Result:
        return replace(result, seed=params.run_config(dataset, run)["train"]["seed"]) if on_dataset else result

    runs = {
        exp: [
            seeded(result, exp),
            *(
                seeded(r, run)
                for run in params.runs(exp, on_dataset)[1:]
                if (r := _load_result(results_dir / run)) is not None
            ),
        ]
        for exp, result in results.items()
    }
    rows = []
    for exp in experiments:
        row = _experiment_row(exp, params.entry(exp), runs, protocols)
        # Entries that resolve to one training share its model: evaluation-only variants (210),
        # and entries whose readings train the same network.
        owner = model_owner(params, dataset, exp) if on_dataset else exp
        if owner != exp:
            row["note"] = f"{row['note']} [trains the same model as {owner}]".strip()
        if exp in results:
            row |= _seed_columns(runs[exp], protocols.main)
            # The curve lives with the trained model, which evaluation-only variants share.
            row |= _best_on_test(results_dir / owner / TEST_CURVE, protocols.main)
        rows.append(row)

    main = protocols.main
    cmc_experiments = _cmc_experiments(rows, protocols, cmc_experiments, baseline)
    curves = {exp: _cmc(results[exp].queries(main)) for exp in cmc_experiments}
    plotted = [row for row in rows if not _missing(row.get(f"{main}_mAP"))]
    images = {
        CMC_PLOT: _png(_cmc_figure(dataset, main, curves, baseline)),
        CC_BARS: _png(_bars_figure(dataset, main, plotted)),
    }

    columns = _display_columns(
        protocols,
        with_seeds=any(row.get("seeds") for row in rows),
        with_test_curves=any(row.get("test_best_epoch") for row in rows),
    )
    table = [[header for header, _ in columns]] + [[cell(row) for _, cell in columns] for row in rows]
    changed = {
        row["exp"]: experiment_changes(params, row["base"], row["exp"], on_dataset) for row in rows if row["base"]
    }
    table[0].append("Config vs base")
    for cells, row in zip(table[1:], rows):
        found = changed.get(row["exp"])
        cells.append(Link(f"{len(found)} key(s)", f"#config-{row['exp']}") if found is not None else "")
    sections = [Section("What changed: resolved config vs base (after inheritance)")]
    sections += [
        Section(f"{exp} vs {entry_base}", f"config-{exp}", tuple(change_lines(found)) or ("no difference",), level=3)
        for exp, found in changed.items()
        for entry_base in [str(params.entry(exp)["base"])]
    ]
    extra: dict[str, bytes] = {}
    sections += _figure_sections(dataset, params, results_dir, rows, cmc_experiments, prepared_dir, extra)
    title = f"Ablation report: {dataset}"
    header = _header_lines(dataset, protocols, rows, results)

    csv_text = pd.DataFrame(rows, columns=_csv_columns(protocols)).to_csv(index=False)
    built_runs = [result.per_query_path.parent.name for results_of_exp in runs.values() for result in results_of_exp]
    jobs = job_benchmarks(params, dataset, built_runs, logs_dir) if on_dataset else {}
    if jobs:
        header.append(f"Run time and peak memory of each job behind these results: {REPORT_JOBS}.")
    files = {
        REPORT_MD: _markdown(title, header, table, list(images), tuple(sections)).encode(),
        REPORT_CSV: csv_text.encode(),
        REPORT_HTML: _html(title, header, table, images, tuple(sections), extra).encode(),
        REPORT_JOBS: jobs_csv(jobs).encode(),
        **images,
        **extra,
    }
    return Report(files=files, protocols=protocols, rows=rows, cmc_experiments=cmc_experiments)


def _run_eval(params, dataset: str, exp: str) -> dict:
    return (params.run_config(dataset, exp) if dataset in params.datasets else params.resolve(exp))["eval"]


def _figure_sections(
    dataset: str,
    params,
    results_dir: Path,
    rows: list[dict],
    compared: list[str],
    prepared_dir: Path | None,
    files: dict[str, bytes],
) -> list[Section]:
    """Ranked lists of the compared experiments (beside their base's) and every run's training
    curves; their PNGs go into `files` by report-relative name."""
    sections = []
    bases = {row["exp"]: row["base"] for row in rows}
    if prepared_dir is not None:
        with_features = [exp for exp in compared if (results_dir / exp / FEATURES).is_file()]
        if with_features:
            data = load_prepared(Path(prepared_dir))
            sections.append(Section("Ranked lists (green: same identity, red: other; junk left out)"))
        for exp in with_features:
            names = [exp] + [base for base in [bases.get(exp)] if base and (results_dir / base / FEATURES).is_file()]
            runs = [
                Run(
                    name + (" (base)" if i else ""),
                    *read_features(results_dir / name / FEATURES),
                    _run_eval(params, dataset, name),
                )
                for i, name in enumerate(names)
            ]
            drawn = []
            for protocol in multi_shot(runs[0].protocols):
                name = f"{REPORT_RANKED_DIR}/{exp}_{protocol.name}.png"
                files[name] = ranked_list_png(dataset, protocol, runs, data.samples, data.images_path)
                drawn.append(name)
            sections.append(Section(" vs ".join(names), images=tuple(drawn), level=3))
    curves = []
    for row in rows:
        if row["status"] != "run":
            continue
        exp = row["exp"]
        owner = model_owner(params, dataset, exp) if dataset in params.datasets else exp
        if has_history(results_dir / owner / LIVE_DIR):
            name = f"{REPORT_CURVES_DIR}/{exp}.png"
            files[name] = curves_png(
                exp if owner == exp else f"{exp} (trained as {owner})", results_dir / owner / LIVE_DIR
            )
            curves.append(Section(exp if owner == exp else f"{exp} (the model of {owner})", images=(name,), level=3))
    if curves:
        sections += [Section("Training curves (DVCLive history)")] + curves
    return sections

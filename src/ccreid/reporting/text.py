"""The report's table in words and the text around it, as report.md and report.html
(ccreid.reporting.markup): percentages with their intervals, the marks on the differences, what
a difference can show, the header lines that say what the numbers hold, and the config each
experiment changes against its base (ccreid.reporting.config_diff)."""

from __future__ import annotations

from typing import Callable

from ccreid.core.paths import REPORT_HTML, REPORT_JOBS, REPORT_MD
from ccreid.evaluation.stats import MAX_SEEDS, POWER
from ccreid.reporting.config_diff import change_lines, experiment_changes
from ccreid.reporting.figures import Figures
from ccreid.reporting.markup import Link, Section, html_page, markdown_page
from ccreid.reporting.results import Protocols, Results
from ccreid.reporting.table import CONFIDENCE, DETECT_EFFECT, HEADLINE, NOT_RUN, QUERIES_ONLY, missing

PROTOCOL_MEANING = {
    "cc": "clothes-changing",
    "sc": "same clothes",
    "standard": "every cross-camera match, clothes ignored",
}
DETECTABLE_HEADER = "Δ {main} mAP: runs base/exp; detectable at 80% power; seeds for 1 pp"


def report_pages(params, results: Results, rows: list[dict], figures: Figures, jobs_listed: bool) -> dict[str, bytes]:
    """report.md and report.html of `rows` (the table as numbers): the header lines, the table
    with a link from each row to its config difference, the plots, the config differences and
    the figures' sections. `jobs_listed`: the header names jobs.csv."""
    protocols = results.protocols
    columns = _display_columns(
        protocols,
        with_seeds=any(row.get("seeds") for row in rows),
        with_test_curves=any(row.get("test_best_epoch") for row in rows),
    )
    table = [[header for header, _ in columns]] + [[cell(row) for _, cell in columns] for row in rows]
    changed = {
        row["exp"]: experiment_changes(params, row["base"], row["exp"], results.on_dataset)
        for row in rows
        if row["base"]
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
    sections += figures.sections
    title = f"Ablation report: {results.dataset}"
    header = _header_lines(results, rows)
    if jobs_listed:
        header.append(f"Run time and peak memory of each job behind these results: {REPORT_JOBS}.")
    return {
        REPORT_MD: markdown_page(title, header, table, list(figures.plots), tuple(sections)).encode(),
        REPORT_HTML: html_page(title, header, table, figures.plots, tuple(sections), figures.section_files).encode(),
    }


def _pct(value) -> str:
    return "" if missing(value) else f"{100 * value:.2f}"


def _percent(key: str) -> Callable[[dict], str]:
    return lambda row: _pct(row.get(key))


def _with_interval(key: str) -> Callable[[dict], str]:
    def cell(row: dict) -> str:
        if missing(row.get(key)):
            return ""
        return f"{_pct(row[key])} [{_pct(row[f'{key}_low'])}, {_pct(row[f'{key}_high'])}]"

    return cell


def _delta(key: str) -> Callable[[dict], str]:
    def cell(row: dict) -> str:
        if missing(row.get(key)):
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
        if missing(row.get(key)):
            return ""
        need, floor = row[f"{key}_seeds_for_1pp"], row[f"{key}_query_floor"]
        if row["delta_interval"] == QUERIES_ONLY:
            seeds = "unknown (no seed spread measured)"
        elif not missing(need):
            seeds = f"{need} seeds each"
        elif floor > DETECT_EFFECT:
            seeds = f"no number of seeds (the queries alone: {100 * floor:.2f})"
        else:
            seeds = f"more than {MAX_SEEDS} seeds each"
        return f"{row['delta_runs']} runs; {100 * row[f'{key}_detectable']:.2f}; 1 pp: {seeds}"

    return cell


def _mean_std(key: str) -> Callable[[dict], str]:
    def cell(row: dict) -> str:
        return "" if missing(row.get(key)) else f"{_pct(row[key])} ± {_pct(row[f'{key}_std'])}"

    return cell


def _seeds_mean_std(key: str) -> Callable[[dict], str]:
    def cell(row: dict) -> str:
        return "" if missing(row.get(f"{key}_mean")) else f"{_pct(row[f'{key}_mean'])} ± {_pct(row[f'{key}_std'])}"

    return cell


def _best_on_test_cell(main: str) -> Callable[[dict], str]:
    def cell(row: dict) -> str:
        if missing(row.get(f"test_best_{main}_R1")):
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


def _header_lines(results: Results, rows: list[dict]) -> list[str]:
    dataset, protocols = results.dataset, results.protocols
    main, second = protocols.main, protocols.second
    run = sum(row["status"] == "run" for row in rows)
    confidence = round(100 * CONFIDENCE)

    def named(protocol: str) -> str:
        meaning = PROTOCOL_MEANING.get(protocol)
        return f"{protocol} ({meaning})" if meaning else protocol

    multi = named(main) + (f" and {named(second)}" if second else "")
    if protocols.single_shot:
        trials = sorted(
            {
                runs[0].metrics[name]["trials"]
                for runs in results.runs.values()
                for name in protocols.single_shot
                if name in runs[0].metrics
            }
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

"""The report's figures: cmc.png (CMC curves, ranks 1–20, of the baseline and the best others),
cc_bars.png (main-protocol mAP and R1 per experiment with their intervals as error bars), and
the sections of ranked lists (ccreid.reporting.ranked_lists) and training curves
(ccreid.reporting.training_curves). Each PNG without the matplotlib version: same plot, same bytes."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ccreid.core.errors import CCReIDError
from ccreid.core.paths import CC_BARS, CMC_PLOT, FEATURES, LIVE_DIR, REPORT_CURVES_DIR, REPORT_RANKED_DIR
from ccreid.core.schema import EvalCfg
from ccreid.data.prepared import load_prepared
from ccreid.evaluation.features import read_features
from ccreid.reporting.markup import Section
from ccreid.reporting.ranked_lists import Run, multi_shot, ranked_list_png
from ccreid.reporting.results import Protocols, Results
from ccreid.reporting.table import CONFIDENCE, missing
from ccreid.reporting.training_curves import curves_png, has_history

MAX_CMC_OTHERS = 5
CMC_RANKS = np.arange(1, 21)


@dataclass(frozen=True)
class Figures:
    cmc_experiments: list[str]  # those cmc.png draws, and the ranked lists show
    plots: dict[str, bytes]  # cmc.png and cc_bars.png, shown under the table
    sections: list[Section]  # ranked lists and training curves, after the config differences
    section_files: dict[str, bytes]  # their PNGs, by report-relative name


def draw_figures(
    params,
    results: Results,
    rows: list[dict],
    requested: list[str] | None,
    baseline: str,
    prepared_dir: Path | None,
) -> Figures:
    """The plots of `rows` (the table as numbers), the CMC curves of the `requested` experiments
    or else of `baseline` and the best others; with `prepared_dir`, their ranked lists beside
    their base's; and the training curves of every run that logged them."""
    dataset, main = results.dataset, results.protocols.main
    cmc_experiments = _cmc_experiments(rows, results.protocols, requested, baseline)
    curves = {exp: _cmc(results.runs[exp][0].queries(main)) for exp in cmc_experiments}
    plotted = [row for row in rows if not missing(row.get(f"{main}_mAP"))]
    plots = {
        CMC_PLOT: _png(_cmc_figure(dataset, main, curves, baseline)),
        CC_BARS: _png(_bars_figure(dataset, main, plotted)),
    }
    files: dict[str, bytes] = {}
    sections = _figure_sections(params, results, rows, cmc_experiments, prepared_dir, files)
    return Figures(cmc_experiments, plots, sections, files)


def _png(figure: Figure) -> bytes:
    # No "Software" entry (it carries the matplotlib version): same plot, same bytes.
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, metadata={"Software": None})
    return buffer.getvalue()


def _cmc(queries: pd.DataFrame) -> np.ndarray:
    first = queries[queries["ap"].notna()]["first_rank"].to_numpy()
    return (first[:, None] < CMC_RANKS[None, :]).mean(axis=0)


def _cmc_experiments(rows: list[dict], protocols: Protocols, requested: list[str] | None, baseline: str) -> list[str]:
    """The requested experiments, or the baseline and the best others by main-protocol mAP."""
    key = f"{protocols.main}_mAP"
    plotted = [row for row in rows if not missing(row.get(key))]
    if requested is not None:
        available = {row["exp"] for row in plotted}
        for exp in requested:
            if exp not in available:
                raise CCReIDError(f"CMC plot: experiment {exp!r} has no {protocols.main!r} results to plot")
        return list(requested)
    first = [row["exp"] for row in plotted if row["exp"] == baseline]
    others = sorted((row for row in plotted if row["exp"] != baseline), key=lambda row: -row[key])
    return first + [row["exp"] for row in others[:MAX_CMC_OTHERS]]


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


def _run_eval(params, dataset: str, exp: str) -> EvalCfg:
    return (params.run_config(dataset, exp) if dataset in params.datasets else params.resolve(exp)).eval


def _figure_sections(
    params,
    results: Results,
    rows: list[dict],
    compared: list[str],
    prepared_dir: Path | None,
    files: dict[str, bytes],
) -> list[Section]:
    """Ranked lists of the compared experiments (beside their base's) and every run's training
    curves; their PNGs go into `files` by report-relative name."""
    dataset, results_dir = results.dataset, results.results_dir
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
        owner = results.owners[exp]
        if has_history(results_dir / owner / LIVE_DIR):
            name = f"{REPORT_CURVES_DIR}/{exp}.png"
            files[name] = curves_png(
                exp if owner == exp else f"{exp} (trained as {owner})", results_dir / owner / LIVE_DIR
            )
            curves.append(Section(exp if owner == exp else f"{exp} (the model of {owner})", images=(name,), level=3))
    if curves:
        sections += [Section("Training curves (DVCLive history)")] + curves
    return sections

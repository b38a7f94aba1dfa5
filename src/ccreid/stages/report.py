"""Stage `report`: the ablation report of one data set into its results folder (docs/report.md),
built in memory from its parts in ccreid.reporting — the results (results.py), the table as
numbers (table.py), the figures (figures.py), the text (text.py), each job's cost
(job_costs.py) — and written atomically. A rebuild on the same results gives identical bytes."""

from __future__ import annotations

from pathlib import Path

from ccreid.core.atomic import atomic_path
from ccreid.core.paths import LOGS_DIR, REPORT_CSV, REPORT_CURVES_DIR, REPORT_JOBS, REPORT_RANKED_DIR
from ccreid.reporting.figures import draw_figures
from ccreid.reporting.job_costs import job_benchmarks, jobs_csv
from ccreid.reporting.results import load_results
from ccreid.reporting.table import table_csv, table_rows
from ccreid.reporting.text import report_pages


def report(
    dataset: str,
    params,
    results_dir: Path,
    out_dir: Path,
    cmc_experiments: list[str] | None = None,
    experiments: list[str] | None = None,
    prepared_dir: Path | None = None,
    logs_dir: Path = LOGS_DIR,
) -> dict:
    """Write report.md/.csv/.html, cmc.png and cc_bars.png of `experiments` (default: the
    registry) and jobs.csv (from the benchmarks under `logs_dir`) for one data set into `out_dir`,
    the training curves into curves/ and, with `prepared_dir`, the ranked lists of the CMC plot's
    experiments (`cmc_experiments`, default: params.yaml's default.baseline and the best others)
    into ranked/.

    Returns the protocols used, the table rows (the CSV's contents), the experiments drawn in
    cmc.png and the written files.
    """
    results = load_results(dataset, params, Path(results_dir), experiments)
    rows = table_rows(params, results)
    figures = draw_figures(params, results, rows, cmc_experiments, params.default.baseline, prepared_dir)
    jobs = job_benchmarks(params, dataset, results.run_names, Path(logs_dir)) if results.on_dataset else {}
    pages = report_pages(params, results, rows, figures, jobs_listed=bool(jobs))
    built = {
        **pages,
        REPORT_CSV: table_csv(rows, results.protocols),
        REPORT_JOBS: jobs_csv(jobs).encode(),
        **figures.plots,
        **figures.section_files,
    }
    files = {name: Path(out_dir) / name for name in built}
    for folder in (REPORT_RANKED_DIR, REPORT_CURVES_DIR):
        # Always there (Snakemake's directory outputs), without an earlier report's figures.
        (Path(out_dir) / folder).mkdir(parents=True, exist_ok=True)
        for stale in (Path(out_dir) / folder).glob("*.png"):
            if stale not in files.values():
                stale.unlink()
    for name, target in files.items():
        with atomic_path(target) as tmp:
            tmp.write_bytes(built[name])
    protocols = results.protocols
    return {
        "dataset": dataset,
        "protocols": {"main": protocols.main, "second": protocols.second, "single_shot": list(protocols.single_shot)},
        "rows": rows,
        "cmc_experiments": figures.cmc_experiments,
        "files": files,
    }

"""Stage `report`: the ablation report of one data set (ccreid.reporting.ablation) into its
results folder, every file written atomically."""

from __future__ import annotations

from pathlib import Path

from ccreid.core.atomic import atomic_path
from ccreid.core.paths import LOGS_DIR, REPORT_CURVES_DIR, REPORT_RANKED_DIR
from ccreid.reporting.ablation import ablation_report


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
    """Write report.md/.csv/.html, cmc.png, cc_bars.png and jobs.csv (from the benchmarks under
    `logs_dir`) for one data set into `out_dir`, the
    training curves into curves/ and, with `prepared_dir`, the ranked lists into ranked/.

    Returns the protocols used, the table rows (the CSV's contents), the experiments drawn in
    cmc.png and the written files.
    """
    built = ablation_report(
        dataset, params, Path(results_dir), cmc_experiments, experiments, prepared_dir, Path(logs_dir)
    )
    files = {name: Path(out_dir) / name for name in built.files}
    for folder in (REPORT_RANKED_DIR, REPORT_CURVES_DIR):
        # Always there (Snakemake's directory outputs), without an earlier report's figures.
        (Path(out_dir) / folder).mkdir(parents=True, exist_ok=True)
        for stale in (Path(out_dir) / folder).glob("*.png"):
            if stale not in files.values():
                stale.unlink()
    for name, target in files.items():
        with atomic_path(target) as tmp:
            tmp.write_bytes(built.files[name])
    protocols = built.protocols
    return {
        "dataset": dataset,
        "protocols": {"main": protocols.main, "second": protocols.second, "single_shot": list(protocols.single_shot)},
        "rows": built.rows,
        "cmc_experiments": built.cmc_experiments,
        "files": files,
    }

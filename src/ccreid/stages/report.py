"""Stage `report`: the ablation report of one data set (ccreid.reporting.ablation) into its
results folder, every file written atomically."""

from __future__ import annotations

from pathlib import Path

from ccreid.core.atomic import atomic_path
from ccreid.core.paths import REPORT_FILES
from ccreid.reporting.ablation import ablation_report


def report(
    dataset: str,
    params,
    results_dir: Path,
    out_dir: Path,
    cmc_experiments: list[str] | None = None,
    experiments: list[str] | None = None,
) -> dict:
    """Write report.md/.csv/.html, cmc.png and cc_bars.png for one data set into `out_dir`.

    Returns the protocols used, the table rows (the CSV's contents), the experiments drawn in
    cmc.png and the written files.
    """
    built = ablation_report(dataset, params, Path(results_dir), cmc_experiments, experiments)
    files = {name: Path(out_dir) / name for name in REPORT_FILES}
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

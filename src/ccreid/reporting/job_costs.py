"""What each job of a report's results cost: run time, CPU time and peak memory, from the jobs'
benchmark files (ccreid.core.benchmark), as the report's jobs.csv.

Light on imports: the workflow reads `job_benchmarks` to declare the report rule's inputs.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ccreid.core.benchmark import read_benchmark
from ccreid.core.config import model_owner
from ccreid.core.paths import LOGS_DIR, benchmark_path

JOB_COLUMNS = ("job", "run", "seconds", "max_rss_mib", "cpu_seconds", "mean_load_pct")


def job_benchmarks(params, dataset: str, runs: list[str], logs: Path = LOGS_DIR) -> dict[tuple[str, str], Path]:
    """The benchmark file of every job the runs' results come from, by (job, run): the data
    set's synthesis and preparation, and each run's training (that of the run whose model it
    uses: 210's is 209's), extraction and evaluation. The ImageNet weights are a download shared by
    every data set, not a cost of these results (their job's file: paths.weights_benchmark_path)."""
    jobs: dict[tuple[str, str], Path] = {}
    if params.dataset(dataset).synth is not None:
        jobs["synth", ""] = benchmark_path(dataset, "synth", logs=logs)
    jobs["prepare", ""] = benchmark_path(dataset, "prepare", logs=logs)
    for run in runs:
        owner = model_owner(params, dataset, run)
        jobs["train", owner] = benchmark_path(dataset, "train", owner, logs)
        jobs |= {(stage, run): benchmark_path(dataset, stage, run, logs) for stage in ("extract", "evaluate")}
    return jobs


def jobs_csv(jobs: dict[tuple[str, str], Path]) -> str:
    """One row per job; empty cells where a job has no benchmark (run outside both orchestrators
    or not measured)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(JOB_COLUMNS)
    for (job, run), path in jobs.items():
        numbers = read_benchmark(path) or {}
        values = [numbers.get(column) for column in ("s", "max_rss", "cpu_time", "mean_load")]
        writer.writerow([job, run, *("" if value is None else f"{value:g}" for value in values)])
    return out.getvalue()

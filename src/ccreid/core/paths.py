"""Where each stage's output lives and what its files are called — the file contracts of
docs/architecture.md, in one place."""

from __future__ import annotations

from pathlib import Path

# Folder outputs carry their fingerprint inside; file outputs beside them, as <file><RECORD_SUFFIX>.
FOLDER_RECORD = "fingerprint.json"
RECORD_SUFFIX = ".fingerprint.json"

# ccreid synth: the raw synthetic data set (PRCC layout) and its own tables
SYNTH_META = "synth_meta.csv"
SYNTH_SUMMARY = "synth_summary.json"

# ccreid prepare: data/prepared/<dataset>/
SAMPLES = "samples.csv"
IMAGES = "images.h5"
PROTOCOLS = "protocols.json"
SUMMARY = "summary.json"
SKIPPED = "skipped.json"  # images left out under on_bad_image: skip

# ccreid train: beside model.pt
MODEL = "model.pt"
CHECKPOINT = "checkpoint.pt"
LIVE_DIR = "live"  # DVCLive history
TEST_CURVE = "test_curve.json"  # the test protocols during training (eval.test_every)

# ccreid extract / evaluate: results/<dataset>/<run>/
FEATURES = "features.h5"
METRICS = "metrics.json"
PER_QUERY = "per_query.csv"
CMC = "cmc.csv"

# ccreid config write (DVC's config stage): results/<dataset>/<exp>/config/<stage>.json
STAGE_CONFIG = "{stage}.json"

# ccreid report: results/<dataset>/
REPORT_MD, REPORT_CSV, REPORT_HTML = "report.md", "report.csv", "report.html"
CMC_PLOT, CC_BARS = "cmc.png", "cc_bars.png"
REPORT_JOBS = "jobs.csv"  # each job's run time and peak memory (its benchmark), apart: times vary between runs
REPORT_FILES = (REPORT_MD, REPORT_CSV, REPORT_HTML, CMC_PLOT, CC_BARS, REPORT_JOBS)
REPORT_RANKED_DIR = "ranked"  # <exp>_<protocol>.png: the compared experiments' ranked lists, vs base
REPORT_CURVES_DIR = "curves"  # <exp>.png: training curves of each run

# The project's folders (the workflow's paths are built from these and the names above).
RAW_DIR = Path("data/raw")  # where the workflow draws a synthetic data set
PREPARED_DIR = Path("data/prepared")
RESULTS_DIR = Path("results")

# Each job's log and benchmark (run time and peak memory, Snakemake's TSV; ccreid.core.benchmark):
# logs/<dataset>/[<run>/]<stage>{.log,.benchmark.tsv}, logs/weights/<file>{.log,.benchmark.tsv}
LOGS_DIR = Path("logs")
LOG_SUFFIX = ".log"
BENCHMARK_SUFFIX = ".benchmark.tsv"

# ccreid smoke: smoke/<dataset>/<exp>/smoke.json, apart from results/ (nothing reads it as a result)
SMOKE_DIR = Path("smoke")
SMOKE_RECORD = "smoke.json"


def smoke_path(dataset: str, exp: str) -> Path:
    return SMOKE_DIR / dataset / exp / SMOKE_RECORD


# ccreid rank-list: results/<dataset>/<exp>/ranked/<protocol>[_vs_<exp>].png
RANKED_DIR = "ranked"


def ranked_list_name(protocol: str, against: str | None = None) -> str:
    return f"{protocol}_vs_{against}.png" if against else f"{protocol}.png"


def raw_dir(dataset: str) -> Path:
    return RAW_DIR / dataset


def prepared_dir(dataset: str) -> Path:
    return PREPARED_DIR / dataset


def run_dir(dataset: str, exp: str) -> Path:
    return RESULTS_DIR / dataset / exp


def table_dir(dataset: str, table: str) -> Path:
    """A table's report (REPORT_FILES, REPORT_RANKED_DIR, REPORT_CURVES_DIR)."""
    return RESULTS_DIR / dataset / table


def model_path(dataset: str, owner: str) -> Path:
    """Trained weights live with the experiment that owns the training config (see
    Params.model_owner): evaluation-only variants point here instead of training again."""
    return run_dir(dataset, owner) / MODEL


def features_path(dataset: str, exp: str) -> Path:
    return run_dir(dataset, exp) / FEATURES


def metrics_path(dataset: str, exp: str) -> Path:
    return run_dir(dataset, exp) / METRICS


def benchmark_path(dataset: str, job: str, run: str | None = None, logs: Path = LOGS_DIR) -> Path:
    """The benchmark of a data set's job (synth, prepare, report) or, with `run`, of a run's
    (train, extract, evaluate)."""
    return _job_file(Path(logs) / dataset, job, run, BENCHMARK_SUFFIX)


def log_path(dataset: str, job: str, run: str | None = None) -> Path:
    """The log of a job, beside its benchmark."""
    return _job_file(LOGS_DIR / dataset, job, run, LOG_SUFFIX)


def weights_benchmark_path(file_name: str, logs: Path = LOGS_DIR) -> Path:
    return _job_file(Path(logs) / "weights", file_name, None, BENCHMARK_SUFFIX)


def weights_log_path(file_name: str) -> Path:
    return _job_file(LOGS_DIR / "weights", file_name, None, LOG_SUFFIX)


def _job_file(folder: Path, job: str, run: str | None, suffix: str) -> Path:
    return (folder / run if run else folder) / f"{job}{suffix}"

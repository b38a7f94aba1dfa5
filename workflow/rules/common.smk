# Helpers shared by the rules: params.yaml is read once through ccreid's own config code, so
# Snakemake and the CLI can never disagree on inheritance or validation.
import shlex
import subprocess
import sys
from pathlib import Path

from snakemake.logging import logger

from ccreid.core import paths
from ccreid.core.config import load_params, model_owner
from ccreid.core.sections import EVAL_KEYS, EXTRACT_KEYS, canonical_json, eval_section, prepare_section, train_section
from ccreid.core.errors import CCReIDError
# Every rule's params hold its stage's code hash (the one its fingerprint records): Snakemake
# never looks inside a shell command, so this is how a rule reruns when its stage's code changed.
from ccreid.core.stage_code import prepare_code, stage_code
from ccreid.core.weights import IMAGENET_WEIGHTS, WEIGHTS_DIR, weights_path
from ccreid.reporting.job_costs import job_benchmarks

try:
    PARAMS = load_params("params.yaml")
except CCReIDError as error:
    raise WorkflowError(f"params.yaml: {error}")

DEFAULT_DATASET = PARAMS.default.dataset
DATASET = config.get("dataset", DEFAULT_DATASET)  # the data set a table target builds on
DATASETS = list(PARAMS.datasets)
EXPERIMENTS = PARAMS.experiments
RUNS = PARAMS.all_runs  # experiments, plus <exp>@<seed> for each extra training seed (on any data set)
SYNTHETIC = [name for name, cfg in PARAMS.datasets.items() if cfg.synth is not None]


wildcard_constraints:
    dataset="|".join(DATASETS),
    exp="|".join(RUNS),


# Tables of params.yaml `tables:`: `snakemake --cores all <table> [--config dataset=prcc]` builds one
# (results/<ds>/<table>/report.md); the default target builds default.table on default.dataset.
TABLES = PARAMS.tables
RULES = {"all", "synth", "prepare", "weights", "train", "extract", "evaluate", "report"}
if TABLES.keys() & RULES:
    raise WorkflowError(f"params.yaml: tables {sorted(TABLES.keys() & RULES)} are named as rules of the workflow; rename them")
if PARAMS.unlisted():
    logger.info(
        f"ccreid: in no table of params.yaml, so built only when named: {', '.join(PARAMS.unlisted())} "
        f"(`snakemake --cores all results/<ds>/<exp>/metrics.json`, or add them to a table)"
    )


def table_metrics(dataset, table):
    """Every run (all seeds) of the table's experiments."""
    return [str(paths.metrics_path(dataset, run)) for exp in PARAMS.table(table) for run in PARAMS.runs(exp, dataset)]


def raw_root(wildcards):
    """The raw data a data set is prepared from; a missing real data set stops the plan here."""
    cfg = PARAMS.dataset(wildcards.dataset)
    if cfg.synth is None and not Path(cfg.root).is_dir():
        how = cfg.obtain or "see docs/datasets.md for where to obtain it"
        raise WorkflowError(
            f"data set {wildcards.dataset!r} is not on disk: place it at {cfg.root} in its published "
            f"layout ({cfg.layout}) or set datasets.{wildcards.dataset}.root in params.yaml; {how}."
        )
    return cfg.root


def synth_params(wildcards):
    """What synthesis reads: the data set's synth section (its drawing strengths are code)."""
    return canonical_json(PARAMS.dataset(wildcards.dataset).synth.model_dump(mode="json"))


def prepare_params(wildcards):
    """What preparation reads: not the overrides or schedule a data set's runs read, nor its notes."""
    return canonical_json(prepare_section(PARAMS.dataset(wildcards.dataset)))


def layout_code(wildcards):
    """The code hash of preparation: the stage's and the data set's layout's."""
    return prepare_code(PARAMS.dataset(wildcards.dataset).layout, PARAMS.plugins)


def train_params(wildcards):
    return canonical_json(train_section(PARAMS.run_config(wildcards.dataset, wildcards.exp)))


def eval_params(keys):
    def params(wildcards):
        return canonical_json(eval_section(PARAMS.run_config(wildcards.dataset, wildcards.exp).eval, keys))

    return params


def run_code(stage):
    """The code hash of a run's stage: the registry members its config selects (its model's, its
    loss terms' and augmentations') and, for training, the monitors when the run monitors."""

    def code(wildcards):
        return stage_code(stage, PARAMS.run_config(wildcards.dataset, wildcards.exp))

    return code


def cpu_threads(stage):
    """The CPU threads a job reserves: those its config runs torch with (train.cpu_threads,
    eval.cpu_threads), so the numbers do not depend on the orchestrator."""
    section = {"train": "train", "extract": "eval"}[stage]

    def threads(wildcards):
        return getattr(PARAMS.run_config(wildcards.dataset, wildcards.exp), section).cpu_threads

    return threads


def trained_model(wildcards):
    """Experiments that differ only in evaluation share their owner's model (210 -> 209)."""
    return str(paths.model_path(wildcards.dataset, model_owner(PARAMS, wildcards.dataset, wildcards.exp)))


# data/weights/<published file name> -> the backbone it initialises (rule weights).
WEIGHT_FILES = {weights.file: backbone for backbone, weights in IMAGENET_WEIGHTS.items()}


def initial_weights(wildcards):
    """The weight file a run's training starts from (model.pretrained), none when from scratch.
    A backbone without ImageNet weights stops the plan here, before any job runs."""
    model = PARAMS.run_config(wildcards.dataset, wildcards.exp).model
    if model.pretrained == "none":
        return []
    if model.pretrained == "imagenet":
        try:
            return [str(weights_path(model.backbone_name))]
        except CCReIDError as error:
            raise WorkflowError(f"experiment {wildcards.exp} on {wildcards.dataset}: {error}")
    return [model.pretrained]


# What `snakemake --report` holds, by file: its caption (workflow/report/) and its subcategory
# within the data set's category; report.md stays out (report.html is the same, rendered).
REPORTED = {
    paths.REPORT_HTML: ("ablation.rst", "ablation table"),
    paths.REPORT_CSV: ("table_csv.rst", "ablation table"),
    paths.CMC_PLOT: ("cmc.rst", "plots"),
    paths.CC_BARS: ("bars.rst", "plots"),
    paths.REPORT_JOBS: ("jobs.rst", "run time and memory"),
}


# The report() flag under another name: a line starting with `report` is Snakemake's keyword.
for_report = report


def report_outputs(folder):
    """The report stage's outputs in `folder`, marked for Snakemake's report: the category is the
    data set, the subcategory the table."""
    table = "{table}"
    outputs = [
        for_report(
            f"{folder}/{name}",
            caption=f"../report/{REPORTED[name][0]}",
            category="{dataset}",
            subcategory=f"{table}: {REPORTED[name][1]}",
        )
        if name in REPORTED
        else f"{folder}/{name}"
        for name in paths.REPORT_FILES
    ]
    for subdir, caption, what in (
        (paths.REPORT_RANKED_DIR, "ranked_lists.rst", "ranked lists"),
        (paths.REPORT_CURVES_DIR, "curves.rst", "training curves"),
    ):
        outputs.append(
            for_report(
                directory(f"{folder}/{subdir}"),
                patterns=["{name}.png"],
                caption=f"../report/{caption}",
                category="{dataset}",
                subcategory=f"{table}: {what}",
            )
        )
    return outputs


# The rules' paths, wildcards in place of names (ccreid.core.paths: one definition of each).
RAW = str(paths.raw_dir("{dataset}"))
PREPARED = str(paths.prepared_dir("{dataset}"))
RUN = paths.run_dir("{dataset}", "{exp}")
TABLE = str(paths.table_dir("{dataset}", "{table}"))


def job_log(job):
    return str(paths.log_path("{dataset}", job))


def run_log(stage):
    return str(paths.log_path("{dataset}", stage, "{exp}"))


def job_benchmark(job):
    """A data set's job's benchmark file (run time, memory). Under DVC the `ccreid` stage writes
    the same file (`--benchmark`): a result DVC built is then complete for Snakemake."""
    return str(paths.benchmark_path("{dataset}", job))


def run_benchmark(stage):
    return str(paths.benchmark_path("{dataset}", stage, "{exp}"))


def table_inputs(wildcards):
    """The table's metrics, the features its ranked lists rank, the prepared images they show
    and the benchmarks of the jobs behind them (the report's jobs.csv)."""
    runs = [run for exp in PARAMS.table(wildcards.table) for run in PARAMS.runs(exp, wildcards.dataset)]
    return {
        "metrics": table_metrics(wildcards.dataset, wildcards.table),
        "features": [str(paths.features_path(wildcards.dataset, run)) for run in runs],
        "prepared": str(paths.prepared_dir(wildcards.dataset)),
        "benchmarks": [str(path) for path in job_benchmarks(PARAMS, wildcards.dataset, runs).values()],
    }


def check_trainings(dag):
    """Before the first job: build what each training about to run trains with and check every
    member's contract (`ccreid check`), so a broken member stops the workflow before any job."""
    runs = {}
    for job in dag.needrun_jobs():
        if job.rule.name == "train":
            runs.setdefault(job.wildcards.dataset, []).append(job.wildcards.exp)
    for dataset, names in sorted(runs.items()):
        shell(f"ccreid check --dataset {shlex.quote(dataset)} {' '.join(shlex.quote(n) for n in sorted(names))}")


def record_in_dvc():
    """`ccreid dvc record` where the project is a DVC project with dvc.yaml (docs/scaling.md). Its
    failure is reported, not raised: the results are built, and recording can be run again."""
    if not (Path(".dvc").is_dir() and Path("dvc.yaml").is_file()):
        return
    done = subprocess.run([sys.executable, "-m", "ccreid", "dvc", "record"], capture_output=True, text=True)
    for line in (done.stdout + done.stderr).splitlines():
        logger.info(line)
    if done.returncode != 0:
        logger.warning("these results are not recorded in DVC yet: fix the above, then run `ccreid dvc record`")

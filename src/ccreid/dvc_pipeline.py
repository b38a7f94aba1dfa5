"""DVC's view of the registry and the commands that keep it in step with Snakemake's
(`ccreid dvc ...`, docs/scaling.md "Results through DVC").

dvc.yaml iterates its stages over the runs table `dvc_runs.yaml`, which `ccreid dvc sync` writes
from params.yaml: DVC cannot compute inheritance, model owners (210 → 209) or seeds.
Every stage output is in DVC's cache, fingerprint records and job benchmarks included, so a result
DVC restores is complete and fresh to Snakemake too. What DVC itself would get wrong, ccreid does:

- `record`: Snakemake's builds into dvc.lock and the cache (`dvc commit` of each stage whose
  outputs match their fingerprint records and today's params and code; nothing is run);
- `pull`, `apply`: results from a remote or from finished queue experiments into the workspace,
  through targeted, unforced checkouts that refuse to overwrite anything unsaved, then file times
  set in build order, so Snakemake's time stamps agree (a checkout writes files in any order);
- `queue`: each entry as a DVC experiment whose run restores what is recorded and trains the rest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ccreid.core import fingerprint, paths
from ccreid.core.atomic import atomic_dir, atomic_write_json, atomic_write_text
from ccreid.core.benchmark import benchmark_line
from ccreid.core.config import Params, model_owner
from ccreid.core.errors import CCReIDError
from ccreid.core.schema import ModelCfg, SynthCfg
from ccreid.core.sections import EVAL_KEYS, EXTRACT_KEYS, eval_section, prepare_section, train_section
from ccreid.core.stage_code import prepare_code, stage_code, stage_module
from ccreid.core.weights import check_digest, published, weights_path
from ccreid.data.synthetic import synth_section

# Kept out of core/paths.py, which is in every stage's code closure: a name added there would
# rebuild every result. results/dvc_config/<ds>/{synth,prepare}.json, <ds>/<run>/{train,extract,
# evaluate}.json (+ init.json: what a training not from the ImageNet weights starts from) and
# selected.json (the run `run:` selects) are written by DVC's config stage (`ccreid config write`).
CONFIG_DIR = paths.RESULTS_DIR / "dvc_config"
INIT = "init.json"
SELECTED = "selected.json"
TABLE = Path("dvc_runs.yaml")
LOCK = Path("dvc.lock")
HEADLINE = Path("metrics.json")  # the selected run's metrics: `dvc exp show`'s columns
TABLE_KEY = "dvc_runs"  # the table's top-level key in DVC's templating context (beside params.yaml's)
SAFE_CACHE_TYPES = ("reflink", "copy")
TABLE_HEADER = (
    "# Written by `ccreid dvc sync` from params.yaml: the runs dvc.yaml iterates over (DVC cannot\n"
    "# compute inheritance, model owners or seeds). Do not edit; commit it with params.yaml.\n"
)


# ---------------------------------------------------------------- the runs table
def dvc_datasets(params: Params) -> list[str]:
    """The data sets whose raw data DVC has: synthetic ones (the synth stage writes them) and those
    whose root is DVC-tracked (`dvc add <root>` wrote `<root>.dvc`). Only their results can travel:
    a clone without the raw data could not check a prepared set against it."""
    return [name for name, cfg in params.datasets.items() if cfg.synth is not None or Path(f"{cfg.root}.dvc").is_file()]


def stage_key(dataset: str, run: str) -> str:
    """A run's key in DVC's stage names (`train@synthetic-212-seed2`): DVC splits names at '@'."""
    return f"{dataset}-{run.replace('@', '-seed')}"


def _init_dep(dataset: str, run: str, model_cfg: ModelCfg) -> str:
    """What training starts from, as the train stage's dependency: the ImageNet file (the weights
    stage's output), else the run's init record (from scratch, or a file of the user's)."""
    if model_cfg.pretrained == "imagenet":
        return str(weights_path(model_cfg.backbone_name))
    return str(CONFIG_DIR / dataset / run / INIT)


def runs_table(params: Params) -> dict:
    """Every stage instance dvc.yaml declares, keyed as DVC names them: every registered
    experiment (every seed) on each data set DVC has, the trainings their models come from and the
    ImageNet files those start from. Declared, not built: `dvc repro headline` builds the selected
    run, and a table's builds come from Snakemake (`ccreid dvc record`)."""
    synth: dict[str, dict] = {}
    prepare: dict[str, dict] = {}
    weights: dict[str, dict] = {}
    train: dict[str, dict] = {}
    train_tested: dict[str, dict] = {}
    runs: dict[str, dict] = {}
    for dataset in dvc_datasets(params):
        cfg = params.dataset(dataset)
        if cfg.synth is not None:
            synth[dataset] = {"root": cfg.root}
        prepare[dataset] = {"root": cfg.root}
        for exp in params.experiments:
            for run in params.runs(exp, dataset):
                owner = model_owner(params, dataset, run)
                key = stage_key(dataset, run)
                if key in runs:
                    raise CCReIDError(
                        f"runs {runs[key]['run']!r} and {run!r} of {dataset} would name the same DVC stages "
                        f"(*@{key}): rename one experiment id"
                    )
                runs[key] = {"dataset": dataset, "run": run, "owner": owner}
                run_cfg = params.run_config(dataset, owner)
                model = run_cfg.model
                if model.pretrained == "imagenet":
                    file = weights_path(model.backbone_name)
                    weights[model.backbone_name] = {
                        "file": str(file),
                        "benchmark": str(paths.weights_benchmark_path(file.name)),
                    }
                group = train_tested if run_cfg.eval.test_every else train
                group[stage_key(dataset, owner)] = {
                    "dataset": dataset,
                    "run": owner,
                    "init": _init_dep(dataset, owner, model),
                }
    table = {
        "synth": synth,
        "prepare": prepare,
        "weights": weights,
        "train": train,
        "train_tested": train_tested,
        "runs": runs,
    }
    return {TABLE_KEY: table}


class _Quoted(yaml.SafeDumper):
    """Every string quoted: DVC reads YAML 1.2, where an unquoted 212 is a number and 212e24 a float."""


_Quoted.add_representer(str, lambda dumper, value: dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"'))


def table_text(params: Params) -> str:
    return TABLE_HEADER + yaml.dump(runs_table(params), Dumper=_Quoted, sort_keys=False, width=1000)


def _table_runs(text: str) -> set[str]:
    with contextlib.suppress(yaml.YAMLError, AttributeError, TypeError, KeyError):
        table = yaml.safe_load(text)[TABLE_KEY]
        return {key for group in ("train", "train_tested", "runs") for key in table[group]}
    return set()


def check_table(params: Params) -> dict:
    """The table, which must be the one params.yaml gives now (else one error naming the fix)."""
    expected = table_text(params)
    current = TABLE.read_text() if TABLE.is_file() else ""
    if current != expected:
        old, new = _table_runs(current), _table_runs(expected)
        change = ", ".join([f"+{key}" for key in sorted(new - old)] + [f"-{key}" for key in sorted(old - new)])
        raise CCReIDError(
            f"{TABLE} is out of date with {params.source}{f' ({change})' if change else ''}: run `ccreid dvc sync` "
            f"and commit {TABLE} with {params.source}, so that DVC's stages are params.yaml's runs"
        )
    return runs_table(params)[TABLE_KEY]


# ---------------------------------------------------------------- the config each stage reads
def _section_entries(params: Params, table: dict) -> dict[Path, dict]:
    """Every file the config stage writes, by path: a stage's config and code hash (what its
    fingerprint records: DVC's stages depend on these, not on params.yaml and src/ as a whole,
    so DVC reruns a stage when its own config or code changed, after inheritance), and the init
    record of each training that does not start from the ImageNet weights."""
    root = CONFIG_DIR
    entries: dict[Path, dict] = {}
    for dataset in table["synth"]:
        synth = synth_section(_synth(params, dataset))
        entries[root / dataset / "synth.json"] = {"config": synth, "code": stage_code("synth")}
    for dataset in table["prepare"]:
        cfg = params.dataset(dataset)
        code = prepare_code(cfg.layout, params.plugins)
        entries[root / dataset / "prepare.json"] = {"config": prepare_section(cfg), "code": code}
    for item in [*table["train"].values(), *table["train_tested"].values()]:
        run_cfg = params.run_config(item["dataset"], item["run"])
        folder = root / item["dataset"] / item["run"]
        entries[folder / "train.json"] = {"config": train_section(run_cfg), "code": stage_code("train", run_cfg)}
        if run_cfg.model.pretrained != "imagenet":
            entries[folder / INIT] = _init_record(run_cfg.model)
    for item in table["runs"].values():
        run_cfg = params.run_config(item["dataset"], item["run"])
        folder = root / item["dataset"] / item["run"]
        entries[folder / "extract.json"] = {
            "config": eval_section(run_cfg.eval, EXTRACT_KEYS),
            "code": stage_code("extract", run_cfg),
        }
        entries[folder / "evaluate.json"] = {
            "config": eval_section(run_cfg.eval, EVAL_KEYS),
            "code": stage_code("evaluate"),
        }
    return entries


def _synth(params: Params, dataset: str) -> SynthCfg:
    synth = params.dataset(dataset).synth
    assert synth is not None  # the table's synth stages are the synthetic sets'
    return synth


def _init_record(model_cfg: ModelCfg) -> dict:
    from ccreid.core.weights import pretrained_file, sha256

    file = pretrained_file(model_cfg)  # a missing file of the user's stops here, naming it
    return {"pretrained": model_cfg.pretrained, **({"sha256": sha256(file)} if file else {})}


def _json_text(value) -> str:
    return json.dumps(value, indent=2, sort_keys=True) + "\n"  # as atomic_write_json writes it


def write_stage_configs(params: Params, out: Path = CONFIG_DIR) -> None:
    """DVC's `config` stage: checks that the table is params.yaml's and that `run:` selects one of
    its runs, then writes every stage's config file, whole (a run that left leaves none)."""
    table = check_table(params)
    selected = stage_key(params.run.dataset, params.run.exp)
    if selected not in table["runs"]:
        params.entry(params.run.exp)  # an unregistered id: named as such
        raise CCReIDError(
            f"{params.source}: run: {params.run.dataset}/{params.run.exp} is not one of DVC's runs: DVC does not "
            f"have {params.run.dataset}'s raw data (`dvc add {params.dataset(params.run.dataset).root}`, then "
            f"`ccreid dvc sync`); select one of: {', '.join(sorted(table['runs']))}"
        )
    with atomic_dir(out) as tmp:
        for path, entry in _section_entries(params, table).items():
            target = tmp / path.relative_to(CONFIG_DIR)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(_json_text(entry))
        # the headline stage's dependency: puts this stage (and its checks) upstream of it
        (tmp / SELECTED).write_text(_json_text({"dataset": params.run.dataset, "exp": params.run.exp}))


def write_headline(dataset: str, run: str, out: Path = HEADLINE) -> dict:
    """The selected run's metrics at a fixed path, with its name: one row of `dvc exp show`."""
    source = paths.metrics_path(dataset, run)
    try:
        metrics = json.loads(source.read_text())
    except (OSError, ValueError) as error:
        raise CCReIDError(
            f"{source}: cannot read the metrics of run {dataset}/{run} ({error}); build it first"
        ) from None
    headline = {"dataset": dataset, "exp": run, **metrics}
    atomic_write_json(out, headline)
    return headline


# ---------------------------------------------------------------- stages and their state
@dataclass(frozen=True)
class Stage:
    """One stage instance of dvc.yaml, as ccreid checks it."""

    name: str  # as DVC names it: train@synthetic-212
    label: str  # for messages: the run (synthetic/212), data set or weight file
    outs: tuple[Path, ...]  # what dvc.yaml declares: the product (fingerprinted) first, the job's benchmark last
    upstream: tuple[Path, ...]  # its inputs as Snakemake sees them (their times must be older)
    expected: Callable[[], dict] | None = field(default=None, compare=False)  # its fingerprint; None: a digest
    backbone: str = ""  # weights stages: whose published digest the file must have

    @property
    def product(self) -> Path:
        return self.outs[0]

    @property
    def benchmark(self) -> Path:
        return self.outs[-1]


def _expected(stage: str, entry: dict, inputs: dict[str, Path]) -> Callable[[], dict]:
    """The fingerprint the stage module records for this config (as ccreid.core.fingerprint
    .make_fingerprint builds it; tests/test_dvc.py checks the two agree on a Snakemake build)."""

    def build() -> dict:
        return {
            "stage": stage_module(stage),
            "code": entry["code"],
            "config": entry["config"],
            "inputs": {name: fingerprint.hash_input(path) for name, path in sorted(inputs.items())},
        }

    return build


def pipeline_stages(params: Params, table: dict) -> list[Stage]:
    """Every stage of the table with its outputs, in build order (dvc.yaml declares the same)."""
    entries = {str(path.relative_to(CONFIG_DIR)): entry for path, entry in _section_entries(params, table).items()}
    stages = []
    outs: tuple[Path, ...]
    for dataset, item in table["synth"].items():
        root = Path(item["root"])
        outs = (root, paths.benchmark_path(dataset, "synth"))
        stages.append(
            Stage(f"synth@{dataset}", dataset, outs, (), _expected("synth", entries[f"{dataset}/synth.json"], {}))
        )
    for dataset, item in table["prepare"].items():
        raw = Path(item["root"])
        outs = (paths.prepared_dir(dataset), paths.benchmark_path(dataset, "prepare"))
        expected = _expected("prepare", entries[f"{dataset}/prepare.json"], {"raw": raw})
        stages.append(Stage(f"prepare@{dataset}", dataset, outs, (raw,), expected))
    for backbone, item in table["weights"].items():
        file = Path(item["file"])
        stages.append(Stage(f"weights@{backbone}", file.name, (file, Path(item["benchmark"])), (), backbone=backbone))
    for group in ("train", "train_tested"):
        for key, item in table[group].items():
            dataset, run = item["dataset"], item["run"]
            model, folder = paths.model_path(dataset, run), paths.run_dir(dataset, run)
            tested = (folder / paths.TEST_CURVE,) if group == "train_tested" else ()
            outs = (model, fingerprint.record_path(model), folder / paths.LIVE_DIR, *tested)
            prepared = paths.prepared_dir(dataset)
            inputs, upstream = {"prepared": prepared / paths.FOLDER_RECORD}, [prepared]
            init = entries.get(f"{dataset}/{run}/{INIT}")  # none: from the ImageNet file
            weights = item["init"] if init is None else None if init["pretrained"] == "none" else init["pretrained"]
            if weights is not None:
                inputs["weights"] = Path(weights)
                upstream.append(Path(weights))
            expected = _expected("train", entries[f"{dataset}/{run}/train.json"], inputs)
            outs += (paths.benchmark_path(dataset, "train", run),)
            stages.append(Stage(f"{group}@{key}", f"{dataset}/{run}", outs, tuple(upstream), expected))
    for key, item in table["runs"].items():
        dataset, run = item["dataset"], item["run"]
        features, metrics = paths.features_path(dataset, run), paths.metrics_path(dataset, run)
        prepared, model = paths.prepared_dir(dataset), paths.model_path(dataset, item["owner"])
        outs = (features, fingerprint.record_path(features), paths.benchmark_path(dataset, "extract", run))
        inputs = {"prepared": prepared / paths.FOLDER_RECORD, "model": model}
        expected = _expected("extract", entries[f"{dataset}/{run}/extract.json"], inputs)
        stages.append(Stage(f"extract@{key}", f"{dataset}/{run}", outs, (prepared, model), expected))
        outs = (
            metrics,
            fingerprint.record_path(metrics),
            metrics.with_name(paths.PER_QUERY),
            metrics.with_name(paths.CMC),
            paths.benchmark_path(dataset, "evaluate", run),
        )
        expected = _expected("evaluate", entries[f"{dataset}/{run}/evaluate.json"], {"features": features})
        stages.append(Stage(f"evaluate@{key}", f"{dataset}/{run}", outs, (features,), expected))
    return stages


FRESH, ABSENT, STALE = "fresh", "absent", "stale"


def state(stage: Stage) -> tuple[str, str]:
    """(FRESH | ABSENT | STALE | a problem, why): ABSENT when its product was never built, STALE
    when it was built from another config, code or input than today's (to build again), FRESH when
    it matches them whole; a product without its record, or a record that does not describe the
    files, is a problem (the message names the file)."""
    product = stage.product
    if not product.exists():
        return ABSENT, ""
    if stage.expected is None:  # downloaded weights: a published file, its digest says
        try:
            check_digest(product, published(stage.backbone))
        except CCReIDError as error:
            return "problem", str(error)
        return FRESH, ""
    record_file = fingerprint.record_path(product)
    try:
        record = json.loads(record_file.read_text())
        described = {key: value for key, value in record.items() if key != "sizes"}
    except (OSError, ValueError, AttributeError):
        return "problem", (
            f"{product} has no readable fingerprint record ({record_file}): its build was interrupted or "
            "the record was removed; delete it and build it again"
        )
    if not fingerprint.is_fresh(product, described):
        return "problem", (
            f"{product} does not match its fingerprint record {record_file} (the recorded file sizes differ: "
            "changed, cut short or partly deleted after it was built); delete it and build it again"
        )
    try:
        expected = stage.expected()
    except CCReIDError as error:  # an input is missing: it cannot have been built from today's inputs
        return STALE, str(error)
    if described != expected:
        changed = fingerprint.differences(described, expected)
        return STALE, "built from another " + ", ".join(changed[:3]) + (" …" if len(changed) > 3 else "")
    missing = [str(out) for out in stage.outs if out != stage.benchmark and not out.exists()]
    if missing:
        return "problem", f"{product} is built but {', '.join(missing)} is missing; delete {product} and build it again"
    return FRESH, ""


# ---------------------------------------------------------------- running dvc
def dvc(*args: str, what: str = "") -> str:
    """Run a dvc command; its failure is one error with DVC's own last lines."""
    result = subprocess.run(["dvc", *args], capture_output=True, text=True)
    if result.returncode != 0:
        lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
        raise CCReIDError(
            f"`dvc {' '.join(args[:3])}{' …' if len(args) > 3 else ''}` failed{what}:\n" + "\n".join(lines[-12:])
        )
    return result.stdout


def check_repository() -> None:
    if not Path(".dvc").is_dir() or not Path("dvc.yaml").is_file():
        raise CCReIDError("not the root of a DVC project with dvc.yaml (run from the project root; `dvc init` once)")
    cache_type = subprocess.run(["dvc", "config", "cache.type"], capture_output=True, text=True).stdout.strip()
    unsafe = [kind.strip() for kind in cache_type.split(",") if kind.strip() not in SAFE_CACHE_TYPES and kind.strip()]
    if unsafe:
        raise CCReIDError(
            f"DVC's cache.type is {cache_type!r}: with {'/'.join(unsafe)} links a result in the workspace is the "
            "cache's own file, and Snakemake writes its benchmark files in place, through the link into the "
            'cache; set `dvc config cache.type reflink,copy` (docs/scaling.md, "Disk")'
        )


def changed_stages() -> dict[str, list]:
    """`dvc status`: the stages whose dvc.lock entry no longer matches the workspace (or has none)."""
    out = dvc("status", "--json").strip()
    return json.loads(out) if out else {}


def _lock_yaml():
    """dvc.lock as DVC reads and writes it: YAML 1.2 (PyYAML's 1.1 would turn a param `off` into
    false), round trip, so an entry taken from another lock file keeps its exact values."""
    from ruamel.yaml import YAML

    yaml_12 = YAML()
    return yaml_12


def _lock_stages(text: str, where: str) -> dict:
    from ruamel.yaml.error import YAMLError

    try:
        stages = (_lock_yaml().load(text) or {}).get("stages")
    except (YAMLError, AttributeError) as error:
        raise CCReIDError(f"{where}: not a DVC lock file ({error}); restore it from git") from None
    return stages if stages is not None else {}


def read_lock(path: Path = LOCK) -> dict:
    return _lock_stages(path.read_text(), str(path)) if path.is_file() else {}


def write_lock(stages: dict, path: Path = LOCK) -> None:
    import io

    text = io.StringIO()
    _lock_yaml().dump({"schema": "2.0", "stages": stages}, text)
    atomic_write_text(path, text.getvalue())


# ---------------------------------------------------------------- file times for Snakemake
def _paths_under(path: Path) -> Iterator[Path]:
    yield path
    if path.is_dir():
        yield from path.rglob("*")


@contextlib.contextmanager
def times_kept(outs: list[Path]):
    """Give every file and folder under `outs` its time back after the block (`dvc commit` sets
    new ones, in its own order, which Snakemake would read as inputs newer than outputs)."""
    saved = {p: (p.stat().st_atime_ns, p.stat().st_mtime_ns) for out in outs for p in _paths_under(out) if p.exists()}
    yield
    for path, stamps in saved.items():
        if path.exists() and path.stat().st_mtime_ns != stamps[1]:
            os.utime(path, ns=stamps)


def _snakemake_time(path: Path) -> float:
    """A file's time as Snakemake reads it: a folder's is that of the .snakemake_timestamp Snakemake
    puts in the folders it builds, else the folder's own."""
    stamp = path / ".snakemake_timestamp"
    return (stamp if path.is_dir() and stamp.is_file() else path).stat().st_mtime


def order_times(stages: list[Stage]) -> list[str]:
    """Give fresh results times in build order, as Snakemake would have left them: Snakemake
    rebuilds an output older than an input, and a checkout (`dvc checkout`, `pull`, `exp apply`)
    writes files in any order. Only a fresh stage with an output no newer than an input is
    touched (then one second past its newest input, for coarse file systems); a stale one keeps
    its times, so Snakemake still rebuilds it. Returns the stages retimed."""
    retimed = []
    for stage in stages:  # in build order: inputs are settled before their readers
        outs = [out for out in stage.outs if out.exists()]
        inputs = [path for path in stage.upstream if path.exists()]
        if not outs or not inputs:
            continue
        newest_input = max(_snakemake_time(path) for path in inputs)
        if min(_snakemake_time(out) for out in outs) > newest_input or state(stage)[0] != FRESH:
            continue
        stamp = newest_input + 1
        for out in outs:
            os.utime(out, (stamp, stamp))
            if (out / ".snakemake_timestamp").is_file():
                os.utime(out / ".snakemake_timestamp", (stamp, stamp))
        retimed.append(stage.name)
    return retimed


# ---------------------------------------------------------------- the commands
def sync(params: Params, drop: tuple[str, ...] = ()) -> list[str]:
    """Write the runs table from params.yaml. A run that leaves it while dvc.lock records its
    results is refused unless named in `drop`: DVC's next untargeted checkout (`dvc checkout`,
    `dvc pull`, `dvc exp apply`) would delete the files of outputs dvc.yaml no longer declares.
    A dropped run's files are kept and their times renewed, which DVC reads as changed since it
    placed them, so no checkout deletes them. Returns what changed."""
    text = table_text(params)
    current = TABLE.read_text() if TABLE.is_file() else ""
    if current == text:
        return []
    old, new = _table_runs(current), _table_runs(text)
    leaving = sorted(old - new)
    lock = read_lock()
    recorded = {name.partition("@")[2] for name in lock}
    kept = [key for key in leaving if key in recorded and key not in drop]
    if kept:
        raise CCReIDError(
            f"run(s) {', '.join(kept)} left {params.source} (or its registry), but dvc.lock records their results: "
            "once dvc.yaml stops declaring them, DVC's next untargeted checkout (`dvc checkout`, `dvc pull`, "
            "`dvc exp apply`) deletes their files from the workspace (they stay in DVC's cache). Put them back, or "
            f"keep the files outside DVC with `ccreid dvc sync --drop {' '.join(kept)}`"
        )
    for key in leaving:
        for name, entry in lock.items():
            if name.partition("@")[2] == key:
                for out in entry.get("outs", []):
                    for path in _paths_under(Path(out["path"])):
                        if path.exists():
                            os.utime(path)
    atomic_write_text(TABLE, text)
    return [f"+{key}" for key in sorted(new - old)] + [f"-{key}" for key in leaving]


def record(params: Params, drop: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """Record the results built outside DVC (by Snakemake) in dvc.lock and DVC's cache: each stage
    whose outputs match their fingerprint records and today's config, code and inputs is
    committed (`dvc commit`, nothing run); stale and unbuilt ones are left to be built. A result
    whose files do not match its record stops everything, naming it: nothing is recorded."""
    check_repository()
    synced = sync(params, drop)
    table = check_table(params)
    write_stage_configs(params)
    changed = changed_stages()
    stages = pipeline_stages(params, table)
    fresh, stale, problems = [], [], []
    for stage in stages:
        if stage.name not in changed:
            continue  # dvc.lock records it as it is
        kind, why = state(stage)
        if kind == FRESH:
            fresh.append(stage)
        elif kind == STALE:
            stale.append(f"{stage.name} ({stage.label}): {why}")
        elif kind != ABSENT:
            problems.append(f"{stage.label}: {why}")
    if problems:
        raise CCReIDError("cannot record these results, so nothing was recorded:\n  " + "\n  ".join(problems))
    for stage in fresh:
        if not stage.benchmark.exists():  # built before benchmarks existed: complete, cost unmeasured
            atomic_write_text(stage.benchmark, benchmark_line(None))
    committing = [*(["config"] if "config" in changed else []), *(stage.name for stage in fresh)]
    selected = stage_key(params.run.dataset, params.run.exp)
    evaluated = next(s for s in stages if s.name == f"evaluate@{selected}")
    if "headline" in changed and (evaluated in fresh or evaluated.name not in changed):
        write_headline(params.run.dataset, params.run.exp)
        committing.append("headline")
    outs = [out for stage in fresh for out in stage.outs] + [CONFIG_DIR]
    if committing:
        with times_kept(outs):
            dvc("commit", "--force", *committing, what=" (recording results)")
    order_times(stages)  # results DVC placed (`dvc exp apply`, `dvc checkout`): in build order for Snakemake
    return {"synced": synced, "recorded": [s.name for s in fresh], "stale": stale}


def _configured_remote(remote: str | None) -> str:
    remotes = dvc("remote", "list").split()
    if remote is not None:
        if remote not in remotes[::2]:
            raise CCReIDError(f"no DVC remote named {remote!r} (configured: {', '.join(remotes[::2]) or 'none'})")
        return remote
    default = subprocess.run(["dvc", "config", "core.remote"], capture_output=True, text=True).stdout.strip()
    if not default:
        raise CCReIDError(
            "no default DVC remote: `dvc remote add -d store <dir-or-url>` and commit .dvc/config (experiments "
            "pushed with `dvc exp push` use the remote of their own commit), or pass --remote NAME"
        )
    return default


def _raw_data(params: Params, table: dict) -> list[str]:
    """The `.dvc` files of the real data sets' raw data (the synthetic ones are stage outputs)."""
    return [f"{params.dataset(name).root}.dvc" for name in table["prepare"] if name not in table["synth"]]


def _recorded_outs(lock: dict, names: list[str], dvc_files: list[str]) -> list[tuple[str, str, str]]:
    """(stage or .dvc file, path, md5) of every output the lock or the .dvc files record."""
    outs = [(name, out["path"], out["md5"]) for name in names for out in lock.get(name, {}).get("outs", [])]
    for dvc_file in dvc_files:
        recorded = yaml.safe_load(Path(dvc_file).read_text()) or {}
        folder = Path(dvc_file).parent
        outs += [(dvc_file, str(folder / out["path"]), out["md5"]) for out in recorded.get("outs", [])]
    return outs


def _missing_objects(outs: list[tuple[str, str, str]]) -> list[str]:
    """The recorded outputs (stage: path) whose bytes DVC's cache lacks, a folder's files included
    (`dvc fetch` only warns about objects the remote lacks)."""
    objects = Path(dvc("cache", "dir").strip()) / "files" / "md5"
    missing = []
    for name, path, md5 in outs:
        manifest = objects / md5[:2] / md5[2:]
        if not manifest.is_file():
            missing.append(f"{name}: {path}")
        elif md5.endswith(".dir"):
            for entry in json.loads(manifest.read_text()):
                if not (objects / entry["md5"][:2] / entry["md5"][2:]).is_file():
                    missing.append(f"{name}: {path}/{entry['relpath']}")
    return missing


def _stale_lock_entries(params: Params, lock: dict, names: list[str]) -> list[str]:
    """Recorded stages whose config file in dvc.lock is not the one params.yaml and the code give
    now: the results DVC holds for them are another config's."""
    entries = {str(path): _json_text(entry) for path, entry in _section_entries(params, check_table(params)).items()}
    stale = []
    for name in names:
        for dep in lock.get(name, {}).get("deps", []):
            text = entries.get(dep["path"])
            if text is not None and hashlib.md5(text.encode()).hexdigest() != dep.get("md5"):
                stale.append(f"{name}: {dep['path']}")
    return stale


def pull(params: Params, remote: str | None = None) -> list[str]:
    """`dvc pull` of the recorded results, made safe and complete for Snakemake: refused when
    dvc.lock records another config than params.yaml's, when the remote is missing or lacks an
    object (nothing checked out then); the checkout is targeted and unforced (an unsaved result
    in the way stops it), then file times follow the build order."""
    check_repository()
    table = check_table(params)
    stages = pipeline_stages(params, table)
    lock = read_lock()
    names = [stage.name for stage in stages if stage.name in lock] + [n for n in ("config",) if n in lock]
    if not names:
        raise CCReIDError(
            f"{LOCK} records no results of dvc.yaml's stages: nothing to pull (commit dvc.lock where they were recorded)"
        )
    stale = _stale_lock_entries(params, lock, names)
    if stale:
        raise CCReIDError(
            f"{LOCK} is out of date with {params.source} and the code: it records results built from other configs "
            "than these files give:\n  " + "\n  ".join(stale) + "\nCheck out the params.yaml (and code) dvc.lock was "
            "recorded with, or build these runs again; nothing was pulled"
        )
    chosen = _configured_remote(remote)
    targets = [*names, *_raw_data(params, table)]  # the raw data too: Snakemake plans from it
    dvc("fetch", "--remote", chosen, *targets, what=f" from remote {chosen!r}")
    missing = _missing_objects(_recorded_outs(lock, names, _raw_data(params, table)))
    if missing:
        raise CCReIDError(
            f"remote {chosen!r} lacks results dvc.lock records (push them from where they were built: "
            "`ccreid dvc push`); nothing was checked out:\n  " + "\n  ".join(missing)
        )
    dvc("checkout", *targets, what=" (an unsaved file is in the way: `ccreid dvc record` it first)")
    order_times(stages)
    return names


def push(params: Params, remote: str | None = None) -> list[str]:
    """`dvc push` of every recorded result and of the raw data DVC tracks for them."""
    check_repository()
    table = check_table(params)
    lock = read_lock()
    names = [s.name for s in pipeline_stages(params, table) if s.name in lock] + [n for n in ("config",) if n in lock]
    chosen = _configured_remote(remote)
    dvc("push", "--remote", chosen, *names, *_raw_data(params, table), what=f" to remote {chosen!r}")
    return names


def _experiment_lock(name: str) -> dict:
    refs = subprocess.run(
        ["git", "for-each-ref", "--format=%(refname)", "refs/exps"], capture_output=True, text=True
    ).stdout.split()
    matches = [ref for ref in refs if ref.rsplit("/", 1)[-1] == name]
    if not matches:
        raise CCReIDError(f"no DVC experiment named {name!r} (`dvc exp show` lists them; `dvc exp pull` fetches)")
    shown = subprocess.run(["git", "show", f"{matches[-1]}:{LOCK}"], capture_output=True, text=True)
    if shown.returncode != 0:
        raise CCReIDError(f"experiment {name!r} has no {LOCK}")
    return _lock_stages(shown.stdout, f"experiment {name!r}'s {LOCK}")


def apply(params: Params, names: list[str]) -> dict[str, list[str]]:
    """Bring the results experiments built (queued runs, `dvc exp pull`ed ones) into the workspace:
    each stage the workspace has not recorded (or recorded under an old config) takes the
    experiment's entry in dvc.lock and is checked out of the cache, unforced (an unsaved file in
    the way stops it); a current recorded result is never replaced and nothing else is touched
    (`dvc exp apply` forces a checkout of the experiment's whole lock file, deleting results it
    does not list)."""
    check_repository()
    record(params)  # Snakemake's builds first: they are then the workspace's, kept
    table = check_table(params)
    stages = pipeline_stages(params, table)
    known = {stage.name for stage in stages}
    lock, outdated = read_lock(), changed_stages()  # after recording: not built, or built from an old config
    merged, taken, kept = dict(lock), [], []
    for name in names:
        for stage, entry in _experiment_lock(name).items():
            if stage not in known or merged.get(stage) == entry:
                continue
            if stage in merged and stage not in outdated:
                kept.append(f"{stage} (from {name}: the workspace's recorded result is kept)")
                continue
            merged[stage] = entry
            taken.append(stage)
    if taken:
        write_lock(merged)
        try:
            dvc("checkout", *taken, what=" (an unsaved file is in the way)")
        except CCReIDError:
            write_lock(lock)
            raise
        order_times(stages)
    return {"applied": taken, "kept": kept}


def queue(params: Params, dataset: str, experiments: list[str]) -> list[str]:
    """Queue registry entries as DVC experiments (`dvc queue start` runs them): built entries are
    recorded first, so each queued run restores them from the cache; what it trains stays in the
    cache (`ccreid dvc apply <name>` brings it to the workspace)."""
    check_repository()
    params.dataset(dataset)
    for exp in experiments:
        params.entry(exp)  # an unknown id stops before anything is queued
    table = runs_table(params)[TABLE_KEY]
    if dataset not in table["prepare"]:
        root = params.dataset(dataset).root
        raise CCReIDError(
            f"DVC does not have {dataset}'s raw data: queued experiments run in copies holding only git- and "
            f"DVC-tracked files; `dvc add {root}`, commit {root}.dvc and push it (docs/datasets.md)"
        )
    record(params)
    queued = []
    for exp in experiments:
        name = stage_key(dataset, exp)
        dvc(
            "exp", "run", "--queue", "-n", name, "-S", f"run.dataset={dataset}", "-S", f"run.exp='{exp}'", "headline",
            what=f" (queueing {name})",
        )  # fmt: skip
        queued.append(name)
    return queued

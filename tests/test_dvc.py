"""DVC over real builds: results in DVC's cache, recorded from Snakemake, experiments that delete
and retrain nothing, a queue that restores what is built and keeps what it trains, results that
travel through a remote, and the bad inputs of each. Real `dvc`, `git` and Snakemake in temp
repositories; one Snakemake build and one queue run shared by the module (docs/scaling.md)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml

from ccreid.core.benchmark import read_benchmark
from ccreid.core.config import load_params
from ccreid.dvc_pipeline import check_table, pipeline_stages, read_lock
from helpers import REPO, copy_built, edit_params, only_experiments, run, tiny_params, write_project

pytestmark = pytest.mark.slow

EXPERIMENTS = ("212", "213", "214")
BUILT = ("212", "214")  # by Snakemake; 213 is left to the queue
RESULTS = ("model.pt", "features.h5", "metrics.json", "per_query.csv", "cmc.csv")


def git_commit(project: Path, message: str) -> None:
    run(["git", "add", "-A"], cwd=project)
    run(["git", "commit", "-qm", message], cwd=project)


def make_repo(root: Path, params: dict | None = None) -> Path:
    """A git + DVC repository holding the project as the repository ships it (params, workflow,
    dvc.yaml, .dvc/config, .dvcignore, sources) with its runs table written."""
    project = write_project(root, params or tiny_params())
    shutil.copytree(REPO / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in (".gitignore", ".dvcignore"):
        shutil.copy(REPO / name, project / name)
    run(["git", "init", "-q"], cwd=project)
    run(["dvc", "init", "-q"], cwd=project)
    shutil.copy(REPO / ".dvc" / "config", project / ".dvc" / "config")
    run(["ccreid", "dvc", "sync"], cwd=project)
    git_commit(project, "project")
    return project


def copy_of(project: Path, root: Path) -> Path:
    """An independent copy (git history, DVC cache and experiments included) for a test to change."""
    shutil.copytree(project, root, symlinks=True)
    return root


def result_files(project: Path, runs=BUILT) -> dict[Path, bytes]:
    return {
        path: path.read_bytes()
        for exp in runs
        for name in RESULTS
        if (path := project / f"results/synthetic/{exp}/{name}").is_file()
    }


def cached(project: Path, path: Path) -> bool:
    """Whether DVC's cache holds the bytes of `path` (as dvc.lock names them)."""
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    return (project / ".dvc/cache/files/md5" / md5[:2] / md5[2:]).is_file()


def corrupt_cache_objects(project: Path) -> list[str]:
    """Cache objects whose bytes no longer hash to their name."""
    return [
        str(path)
        for path in (project / ".dvc/cache/files/md5").rglob("*")
        if path.is_file()
        and hashlib.md5(path.read_bytes()).hexdigest() != (path.parent.name + path.name).removesuffix(".dir")
    ]


def nothing_to_do(project: Path, runs=BUILT) -> bool:
    targets = [f"results/synthetic/{exp}/metrics.json" for exp in runs]
    dry = run(["snakemake", "--cores", "2", "--dry-run", *targets], cwd=project)
    return "Nothing to be done" in dry.stdout + dry.stderr


def changed_stages(project: Path) -> dict:
    out = run(["dvc", "status", "--json"], cwd=project).stdout.strip()
    return json.loads(out) if out else {}


def exp_rows(project: Path) -> dict[str, dict]:
    """`dvc exp show --json` as {experiment name: {"run": ..., "cc.mAP": ..., ...}}."""
    shown = json.loads(run(["dvc", "exp", "show", "--json"], cwd=project).stdout)
    rows = {}

    def visit(node):
        if isinstance(node, dict):
            data = node.get("data")
            if isinstance(data, dict) and "metrics" in data and node.get("name"):
                metrics = data["metrics"].get("metrics.json", {}).get("data", {})
                rows[node["name"]] = {
                    "run": data["params"]["params.yaml"]["data"]["run"],
                    **{
                        f"{p}.{k}": v
                        for p, values in metrics.items()
                        if isinstance(values, dict)
                        for k, v in values.items()
                    },
                }
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(shown)
    return rows


@pytest.fixture(scope="module")
def built(tmp_path_factory, built_212) -> Path:
    """Snakemake builds 214 beside 212 (a copy of the shared build, made before the project was a
    DVC project) in a DVC project whose remote is committed (before any experiment, as
    docs/scaling.md says); Snakemake's success hook records both."""
    root = tmp_path_factory.mktemp("dvc")
    params = tiny_params()
    only_experiments(params, {key: params["experiments"][key] for key in EXPERIMENTS})
    project = make_repo(copy_built(built_212, root / "project"), params)
    run(["dvc", "remote", "add", "-d", "store", str(root / "store")], cwd=project)
    git_commit(project, "the remote")
    build = run(["snakemake", "--cores", "2", *[f"results/synthetic/{exp}/metrics.json" for exp in BUILT]], cwd=project)
    assert "recorded 8 stage(s)" in build.stdout + build.stderr, build.stderr[-3000:]
    git_commit(project, "212 and 214, built by Snakemake")
    return project


@pytest.fixture(scope="module")
def queued(built, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """`ccreid queue` of 212, 213 and 214 on a copy of `built`, run to the end (as `dvc queue
    start -j 1` does, returning once every experiment finished: no polling against a deadline);
    returns the project and each experiment's log."""
    project = copy_of(built, tmp_path_factory.mktemp("queue") / "project")
    run(["ccreid", "queue", "--dataset", "synthetic", "--experiments", *EXPERIMENTS], cwd=project)
    run(["dvc", "exp", "run", "--run-all", "-j", "1"], cwd=project, timeout=900)
    status = run(["dvc", "queue", "status"], cwd=project).stdout
    logs = {
        line.split()[1]: run(["dvc", "queue", "logs", line.split()[0]], cwd=project).stdout
        for line in status.splitlines()[1:]
        if line.strip() and not line.startswith("Worker")
    }
    assert "Failed" not in status and set(logs) == {f"synthetic-{exp}" for exp in EXPERIMENTS}, status + str(logs)
    return project, logs


def test_snakemake_builds_are_recorded_and_experiments_delete_and_retrain_nothing(built, tmp_path):
    """Snakemake's builds are in dvc.lock and DVC's cache; `dvc exp run` of each entry then
    retrains nothing, deletes nothing and leaves the same bytes, and its row has the run's
    metrics; Snakemake still has nothing to do."""
    project = copy_of(built, tmp_path / "project")
    files = result_files(project)
    assert len(files) == 2 * len(RESULTS)
    assert all(cached(project, path) for path in files), "a built result is not in DVC's cache"
    assert {name.split("@")[-1] for name in changed_stages(project)} == {"synthetic-213"}  # the rest: recorded
    for exp in BUILT:
        out = run(["dvc", "exp", "run", "-n", f"e{exp}", "-S", f"run.exp={exp}", "headline"], cwd=project)
        assert "epoch 1/" not in out.stdout + out.stderr, f"dvc exp run retrained {exp}"
        assert "Running stage 'train" not in out.stdout and "Running stage 'extract" not in out.stdout
        assert result_files(project) == files, f"after e{exp}"
    rows = exp_rows(project)
    for exp in BUILT:
        metrics = json.loads(files[project / f"results/synthetic/{exp}/metrics.json"])
        assert str(rows[f"e{exp}"]["run"]["exp"]) == exp and rows[f"e{exp}"]["cc.mAP"] == metrics["cc"]["mAP"]
    assert {k for k in rows["e212"] if "." in k} == {k for k in rows["e214"] if "." in k} >= {"cc.mAP", "sc.R1"}
    plots = run(["dvc", "plots", "show", "--json"], cwd=project).stdout  # of the selected run, 214
    assert "results/synthetic/214/cmc.csv" in plots and "214/live/plots/metrics/train/id.tsv" in plots
    assert nothing_to_do(project)


def test_the_stages_ccreid_checks_are_dvc_yaml_s(built, monkeypatch):
    """What `ccreid dvc` checks of each stage (its outputs, their fingerprints) is what dvc.yaml
    declares and the stage modules record: every stage Snakemake built was found fresh and
    recorded, each with exactly the outputs DVC committed."""
    monkeypatch.chdir(built)
    params = load_params("params.yaml")
    stages = {stage.name: stage for stage in pipeline_stages(params, check_table(params))}
    lock = read_lock()
    recorded = [name for name in stages if name in lock]
    assert len(recorded) == 8  # synth, prepare and 212's and 214's train, extract, evaluate
    for name in recorded:
        assert sorted(out["path"] for out in lock[name]["outs"]) == sorted(str(out) for out in stages[name].outs), name


def test_the_queue_restores_built_entries_and_trains_only_the_missing_one(queued, tmp_path):
    """Queued over 212, 213 and 214 with 212 and 214 built: only 213 trains; `ccreid dvc apply`
    brings its results into the workspace (from the cache) beside the others, untouched, and
    they are complete for Snakemake. `dvc exp apply` of that one experiment does too (then `ccreid
    dvc record` gives the files it wrote their times in build order)."""
    project, logs = queued
    for exp in EXPERIMENTS:
        trained = "epoch 1/" in logs[f"synthetic-{exp}"]
        assert trained == (exp == "213"), f"{exp}: trained={trained}\n{logs[f'synthetic-{exp}'][-2000:]}"
    before = result_files(project)
    assert not (project / "results/synthetic/213").exists()
    for applying in (["ccreid", "dvc", "apply", "synthetic-213"], ["dvc", "exp", "apply", "synthetic-213"]):
        target = copy_of(project, tmp_path / applying[0])
        run(applying, cwd=target)
        if applying[0] == "dvc":  # its checkout wrote files in any order: their times for Snakemake
            run(["ccreid", "dvc", "record"], cwd=target)
        model = target / "results/synthetic/213/model.pt"
        assert model.is_file() and cached(target, model), applying
        assert result_files(target) == {target / path.relative_to(project): data for path, data in before.items()}
        assert nothing_to_do(target, EXPERIMENTS), applying
        benchmark = read_benchmark(target / "logs/synthetic/213/train.benchmark.tsv")
        assert benchmark is not None and benchmark["s"] > 0  # measured by the queued run, for the report
        assert changed_stages(target) == {}, applying


def test_results_and_experiments_travel_through_a_remote(queued, tmp_path):
    """`ccreid dvc push`, a clone, `ccreid dvc pull`: Snakemake and DVC have nothing to do and
    the report is the same, byte for byte; `dvc exp push`/`pull` carry an experiment's results
    with it (its commit holds the remote)."""
    project, _ = queued
    origin = tmp_path / "origin.git"
    run(["git", "init", "-q", "--bare", str(origin)], cwd=tmp_path)
    run(["git", "remote", "add", "origin", str(origin)], cwd=project)
    run(["git", "push", "-q", "origin", "HEAD"], cwd=project)
    run(["ccreid", "dvc", "push"], cwd=project)
    run(["dvc", "exp", "push", "origin", "synthetic-213"], cwd=project)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(origin), str(clone)], cwd=tmp_path)
    assert not (clone / "results").exists()
    run(["ccreid", "dvc", "pull"], cwd=clone)
    assert result_files(clone) == {
        clone / path.relative_to(project): data for path, data in result_files(project).items()
    }
    assert nothing_to_do(clone)
    run(["dvc", "exp", "pull", "origin", "synthetic-213"], cwd=clone)
    run(["ccreid", "dvc", "apply", "synthetic-213"], cwd=clone)
    run(["ccreid", "dvc", "apply", "synthetic-213"], cwd=project)
    assert nothing_to_do(clone, EXPERIMENTS)
    assert changed_stages(clone) == {}
    reports = {}
    for where in (project, clone):
        run(["ccreid", "report", "--dataset", "synthetic", "--experiments", *EXPERIMENTS], cwd=where)
        folder = where / "results/synthetic"
        reports[where] = {
            path.relative_to(folder): path.read_bytes()
            for path in folder.rglob("*")
            if path.is_file()
            and path.parent == folder
            or folder / "ranked" in path.parents
            or folder / "curves" in path.parents
        }
    assert len(reports[project]) > 6 and reports[project] == reports[clone]


def test_bad_input_is_one_error_and_changes_nothing(built, tmp_path):
    """A result whose file does not match its record, a lock out of date with params.yaml, a
    remote that is missing, unreachable or lacks objects: one error naming the run and the file
    (or the remote), nothing deleted, nothing half-written."""
    project = copy_of(built, tmp_path / "project")
    lock = (project / "dvc.lock").read_bytes()

    def refused(command, where, *words):
        out = run(command, cwd=where, check=False)
        message = out.stdout + out.stderr
        assert out.returncode == 2 and "Traceback" not in message, message
        for word in words:
            assert word in message, (word, message)
        assert not list(where.rglob(".tmp-*")), "a temporary was left"

    # features.h5 changed after it was built: its record no longer describes it.
    features = project / "results/synthetic/214/features.h5"
    features.write_bytes(features.read_bytes() + b"\0")
    files = result_files(project)
    refused(["ccreid", "dvc", "record"], project, "synthetic/214", "features.h5", "fingerprint record")
    assert result_files(project) == files and (project / "dvc.lock").read_bytes() == lock

    # Pulling into a clone: the remote is empty, then missing, then unreachable, then the lock is stale.
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(built), str(clone)], cwd=tmp_path)
    run(["dvc", "remote", "modify", "--local", "store", "url", str(tmp_path / "empty-store")], cwd=clone)
    refused(["ccreid", "dvc", "pull"], clone, "lacks results", "train@synthetic-212", "results/synthetic/212/model.pt")
    assert not (clone / "results/synthetic/212").exists()
    refused(["ccreid", "dvc", "pull", "--remote", "nowhere"], clone, "no DVC remote named 'nowhere'")
    run(["dvc", "remote", "remove", "--local", "store"], cwd=clone)
    run(["dvc", "remote", "remove", "store"], cwd=clone)
    refused(["ccreid", "dvc", "pull"], clone, "no default DVC remote", ".dvc/config")
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    run(["dvc", "remote", "add", "-d", "blocked", str(blocked / "store")], cwd=clone)
    refused(["ccreid", "dvc", "pull"], clone, "remote 'blocked'")
    edit_params(clone, lambda p: p["experiments"]["214"].update(eval={"distance": "euclidean"}))
    refused(["ccreid", "dvc", "pull"], clone, "out of date", "evaluate@synthetic-214", "synthetic/214/evaluate.json")
    assert not (clone / "results").exists() and not (clone / "data/prepared").exists()


def remove_214(params: dict) -> None:
    """Entry 214 out of the registry and out of every table."""
    params["experiments"].pop("214")
    params["tables"] = {name: [exp for exp in ids if exp != "214"] for name, ids in params["tables"].items()}


def test_a_removed_entry_is_not_deleted_silently(built, tmp_path):
    """214 leaves params.yaml: DVC's stages stay as they were until `ccreid dvc sync`, which
    refuses while dvc.lock records 214's results and says how to keep them; dropped, the files
    outlive an untargeted checkout."""
    project = copy_of(built, tmp_path / "project")
    files = result_files(project)
    edit_params(project, remove_214)
    out = run(["dvc", "exp", "run", "-S", "run.exp=212", "headline"], cwd=project, check=False)
    assert (
        out.returncode != 0
        and "dvc_runs.yaml is out of date" in out.stdout + out.stderr
        and "-synthetic-214" in out.stderr
    )
    out = run(["ccreid", "dvc", "sync"], cwd=project, check=False)
    assert out.returncode == 2 and "synthetic-214" in out.stderr and "--drop synthetic-214" in out.stderr
    run(["ccreid", "dvc", "sync", "--drop", "synthetic-214"], cwd=project)
    run(["dvc", "checkout"], cwd=project, check=False)  # untargeted: removes unused links it placed unchanged
    assert result_files(project) == files


def test_a_rebuild_by_snakemake_leaves_the_cache_intact(built, tmp_path):
    """The cache type keeps the cache safe from in-place writes: Snakemake writes its benchmark
    file in place; with copies (or reflinks) that never reaches a cache object (with hardlinks it
    does, which `ccreid dvc record` refuses)."""
    project = copy_of(built, tmp_path / "project")
    out = run(
        ["snakemake", "--cores", "1", "results/synthetic/212/metrics.json", "--forcerun", "evaluate"], cwd=project
    )
    assert "recorded 1 stage(s)" in out.stderr  # the new benchmark file
    assert corrupt_cache_objects(project) == []
    run(["dvc", "config", "--local", "cache.type", "hardlink"], cwd=project)
    out = run(["ccreid", "dvc", "record"], cwd=project, check=False)
    assert out.returncode == 2 and "cache.type" in out.stderr and "reflink,copy" in out.stderr


def test_params_follow_inheritance(built, tmp_path):
    """DVC's stages depend on each run's resolved config: editing 213 makes training 214 (based on
    it) stale too, and leaves 212's as it is (213 is not built yet, so it is listed throughout)."""
    project = copy_of(built, tmp_path / "project")

    def stale_trainings() -> set[str]:
        run(["dvc", "repro", "--single-item", "config"], cwd=project)
        return {name for name in changed_stages(project) if name.startswith("train@")}

    assert stale_trainings() == {"train@synthetic-213"}
    edit_params(project, lambda p: p["experiments"]["213"]["model"]["multiscale"].update(blocks=1))
    assert stale_trainings() == {"train@synthetic-213", "train@synthetic-214"}


def test_raw_data_of_a_real_data_set_through_a_remote(tmp_path):
    """A real data set joins DVC's stages once its raw data is DVC-tracked; a clone pulls the raw
    data and builds a run from it."""
    params = tiny_params()
    only_experiments(params, {"212": params["experiments"]["212"]})
    params["datasets"]["prcc"]["size"] = [32, 16]
    # the demo's narrow from-scratch network: no ImageNet file to fetch in a test
    params["datasets"]["prcc"]["overrides"] = params["datasets"]["synthetic"]["overrides"]
    params["run"]["dataset"] = "prcc"
    project = make_repo(tmp_path / "project", params)
    # Stand-in for a real download: a PRCC-layout tree placed under data/raw/prcc.
    run(["ccreid", "synth", "--dataset", "synthetic", "--out", "data/raw/prcc"], cwd=project)
    out = run(["dvc", "repro", "headline"], cwd=project, check=False)
    assert out.returncode != 0 and "prcc/212 is not one of DVC's runs" in out.stdout + out.stderr
    run(["dvc", "add", "data/raw/prcc"], cwd=project)
    run(["ccreid", "dvc", "sync"], cwd=project)
    run(["dvc", "remote", "add", "-d", "store", str(tmp_path / "remote")], cwd=project)
    run(["dvc", "push", "data/raw/prcc.dvc"], cwd=project)
    git_commit(project, "track PRCC with DVC")
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], cwd=tmp_path)
    run(["dvc", "pull", "data/raw/prcc.dvc"], cwd=clone)
    assert sorted(p.name for p in (clone / "data/raw/prcc/rgb").iterdir()) == ["test", "train", "val"]
    run(["dvc", "repro", "headline"], cwd=clone)
    metrics = json.loads((clone / "results/prcc/212/metrics.json").read_text())
    assert {"cc", "sc"} <= set(metrics) and json.loads((clone / "metrics.json").read_text())["dataset"] == "prcc"
    for job in ("prcc/prepare", "prcc/212/train", "prcc/212/extract", "prcc/212/evaluate"):
        numbers = read_benchmark(clone / f"logs/{job}.benchmark.tsv")  # complete for Snakemake
        assert numbers is not None and numbers["s"] > 0, job
    assert yaml.safe_load((clone / "dvc_runs.yaml").read_text())["dvc_runs"]["prepare"].keys() == {"synthetic", "prcc"}

"""DVC: experiments as rows, params that follow inheritance, the queue, raw data through a remote,
and one cache shared with Snakemake. Real `dvc` and `git` in temp repositories."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from ccreid.core.benchmark import read_benchmark
from conftest import only_experiments, REPO, edit_params, run, tiny_params, write_project

GIT_USER = ["-c", "user.email=test@ccreid", "-c", "user.name=test"]


def git_commit(project, message: str) -> None:
    run(["git", "add", "-A"], cwd=project)
    run(["git", *GIT_USER, "commit", "-qm", message], cwd=project)


def make_repo(root, params=None):
    """A git + DVC repository holding the project (params, workflow, dvc.yaml, sources)."""
    project = write_project(root, params or tiny_params())
    shutil.copytree(REPO / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(REPO / ".gitignore", project / ".gitignore")
    run(["git", "init", "-q"], cwd=project)
    run(["dvc", "init", "-q"], cwd=project)
    git_commit(project, "project")
    return project


def exp_rows(project) -> dict[str, dict]:
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
def repo(tmp_path_factory):
    project = make_repo(tmp_path_factory.mktemp("dvc") / "project")
    run(["dvc", "repro"], cwd=project)
    git_commit(project, "baseline run")
    return project


def test_results_dvc_built_are_complete_for_snakemake(repo):
    """Each DVC stage writes its job's benchmark where Snakemake's `benchmark:` puts it, so
    Snakemake finds the results `dvc repro` built complete and has nothing to do (a missing
    benchmark is a missing output: it would delete them and train again)."""
    logs = repo / "logs/synthetic"
    jobs = [logs / f"{job}.benchmark.tsv" for job in ("synth", "prepare")]
    jobs += [logs / "212" / f"{stage}.benchmark.tsv" for stage in ("train", "extract", "evaluate")]
    for path in jobs:
        numbers = read_benchmark(path)
        assert numbers is not None and numbers["s"] > 0 and numbers["max_rss"] > 0, path
    dry = run(["snakemake", "--cores", "2", "--dry-run", "results/synthetic/212/metrics.json"], cwd=repo)
    assert "Nothing to be done" in dry.stdout + dry.stderr


def test_experiments_are_rows_with_aligned_metric_columns(repo):
    run(["dvc", "exp", "run", "-n", "e214", "-S", "run.exp=214"], cwd=repo)
    run(["dvc", "exp", "run", "-n", "e213", "-S", "run.exp=213"], cwd=repo)
    rows = exp_rows(repo)
    assert {"e213", "e214"} <= set(rows)
    assert str(rows["e214"]["run"]["exp"]) == "214" and str(rows["e213"]["run"]["exp"]) == "213"
    columns = {key for key in rows["e214"] if "." in key}
    assert {"cc.mAP", "cc.R1", "sc.mAP", "sc.R1"} <= columns
    assert columns == {key for key in rows["e213"] if "." in key}  # aligned: the same columns
    for name in ("e213", "e214"):
        assert 0.0 <= rows[name]["cc.mAP"] <= 1.0


def test_plots_show_training_curves_and_cmc(repo):
    selected = yaml.safe_load((repo / "params.yaml").read_text())["run"]["exp"]  # dvc exp run -S moves it
    sources = run(["dvc", "plots", "show", "--json"], cwd=repo).stdout
    assert f"results/synthetic/{selected}/cmc.csv" in sources
    assert "live/plots/metrics/train/id.tsv" in sources and "train/lr.tsv" in sources


def test_params_follow_inheritance(repo):
    # The workspace builds 212. Editing 197 (not an ancestor of 212) changes nothing for it.
    edit_params(repo, lambda p: p["experiments"]["197"]["model"]["multiscale"].update(blocks=1))
    out = run(["dvc", "repro"], cwd=repo).stdout
    assert "Running stage 'train'" not in out and "Running stage 'evaluate'" not in out
    # 199 is based on 197: selecting it and editing 197 again reruns its training.
    edit_params(repo, lambda p: p["run"].update(exp="199"))
    run(["dvc", "repro"], cwd=repo)
    edit_params(repo, lambda p: p["experiments"]["197"]["model"]["multiscale"].update(blocks=2))
    out = run(["dvc", "repro"], cwd=repo).stdout
    assert "Running stage 'train'" in out
    run(["git", "checkout", "--", "params.yaml"], cwd=repo)


def test_queue_runs_registry_entries(repo):
    run(["ccreid", "queue", "--dataset", "synthetic", "--experiments", "214", "215"], cwd=repo)
    # Starts the queue's worker (as `dvc queue start -j 1`) and returns once every queued
    # experiment has finished: no polling against a deadline.
    run(["dvc", "exp", "run", "--run-all", "-j", "1"], cwd=repo)
    status = run(["dvc", "queue", "status"], cwd=repo).stdout
    if "Failed" in status or "Queued" in status or "Running" in status:
        logs = [
            run(["dvc", "queue", "logs", line.split()[0]], cwd=repo, check=False).stdout
            for line in status.splitlines()
            if "Failed" in line
        ]
        raise AssertionError(status + "\n".join(logs))
    rows = exp_rows(repo)
    assert {"synthetic-214", "synthetic-215"} <= set(rows), status
    assert "cc.mAP" in rows["synthetic-215"]


def test_one_cache_for_snakemake_and_dvc(tmp_path):
    project = make_repo(tmp_path / "project")
    run(["snakemake", "--cores", "2", "results/synthetic/212/metrics.json"], cwd=project)
    # DVC copies outputs into its cache (new mtimes), so "not rebuilt" is read off the fingerprint
    # records, which only a real rebuild rewrites, and off the training log.
    records = {
        name: project / f"results/synthetic/212/{name}.fingerprint.json"
        for name in ("model.pt", "features.h5", "metrics.json")
    }
    built = {name: path.stat().st_mtime_ns for name, path in records.items()}
    model_record = records["model.pt"].read_text()
    out = run(["dvc", "repro"], cwd=project)
    assert "Running stage 'train'" in out.stdout and "epoch 1/" not in out.stdout + out.stderr
    assert {name: path.stat().st_mtime_ns for name, path in records.items()} == built
    dry = run(["snakemake", "--cores", "2", "--dry-run", "results/synthetic/212/metrics.json"], cwd=project)
    assert "Nothing to be done" in dry.stdout + dry.stderr
    # A changed config still rebuilds.
    edit_params(project, lambda p: p["experiments"]["212"].update(model={"pooling": "avg"}))
    out = run(["dvc", "repro"], cwd=project)
    assert "epoch 1/" in out.stdout + out.stderr  # trained again
    assert records["model.pt"].read_text() != model_record  # the record of the new config


def test_raw_data_through_a_dvc_remote(tmp_path):
    params = tiny_params()
    params["datasets"]["prcc"]["size"] = [32, 16]
    # the demo's narrow from-scratch network: no ImageNet file to fetch in a test
    params["datasets"]["prcc"]["overrides"] = params["datasets"]["synthetic"]["overrides"]
    params["run"]["dataset"] = "prcc"
    project = make_repo(tmp_path / "project", params)
    # Stand-in for a real download: a PRCC-layout tree placed under data/raw/prcc.
    run(["ccreid", "synth", "--dataset", "synthetic", "--out", "data/raw/prcc"], cwd=project)
    run(["dvc", "add", "data/raw/prcc"], cwd=project)
    run(["dvc", "remote", "add", "-d", "store", str(tmp_path / "remote")], cwd=project)
    run(["dvc", "push"], cwd=project)
    git_commit(project, "track PRCC with DVC")
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], cwd=tmp_path)
    assert not (clone / "data/raw/prcc").exists()
    run(["dvc", "pull", "data/raw/prcc.dvc"], cwd=clone)
    assert sorted(p.name for p in (clone / "data/raw/prcc/rgb").iterdir()) == ["test", "train", "val"]
    run(["dvc", "repro", "evaluate"], cwd=clone)
    metrics = json.loads((clone / "results/prcc/212/metrics.json").read_text())
    assert {"cc", "sc"} <= set(metrics)


def test_snakemake_and_dvc_experiments_share_results(tmp_path):
    """One truth across orchestrators: Snakemake builds 212 and 214, then `dvc exp run` of each
    retrains nothing, deletes nothing and leaves the same bytes; `dvc exp show` has both rows and
    Snakemake still has nothing to do. (Before, the second experiment deleted the first's and
    Snakemake's results, and retrained with another thread count.)"""
    params = tiny_params()
    only_experiments(params, {key: params["experiments"][key] for key in ("212", "213", "214")})
    project = make_repo(tmp_path / "project", params)
    targets = [f"results/synthetic/{exp}/metrics.json" for exp in ("212", "214")]
    run(["snakemake", "--cores", "2", *targets], cwd=project)
    files = [
        project / f"results/synthetic/{exp}/{name}"
        for exp in ("212", "214")
        for name in ("model.pt", "features.h5", "metrics.json")
    ]
    built = {path: path.read_bytes() for path in files}
    for exp in ("212", "214"):
        out = run(["dvc", "exp", "run", "-n", f"e{exp}", "-S", f"run.exp={exp}"], cwd=project)
        assert "epoch 1/" not in out.stdout + out.stderr, f"dvc exp run retrained {exp}"
        assert {path: path.read_bytes() for path in files if path.is_file()} == built, f"after e{exp}"
    rows = exp_rows(project)
    assert {"e212", "e214"} <= set(rows) and rows["e214"]["cc.mAP"] == json.loads(built[files[-1]])["cc"]["mAP"]
    dry = run(["snakemake", "--cores", "2", "--dry-run", *targets], cwd=project)
    assert "Nothing to be done" in dry.stdout + dry.stderr

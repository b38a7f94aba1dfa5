"""Exact caching: what Snakemake plans after each kind of edit, and one cache for two orchestrators."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import copy_built, edit_params, only_experiments, run, tiny_params, write_project

pytestmark = pytest.mark.slow

KILLPOINT = Path(__file__).with_name("killpoint.py")


def small_registry() -> dict:
    """212 -> 213 -> 214, and 210 (= 214 evaluated with euclidean distance, sharing its model)."""
    params = tiny_params()
    registry = params["experiments"]
    return only_experiments(
        params,
        {
            "212": registry["212"],
            "213": registry["213"],
            "214": registry["214"],
            "210": {"base": "214", "note": "214 with euclidean distance", "eval": {"distance": "euclidean"}},
        },
    )


def planned_outputs(project) -> set[str]:
    """The outputs of every job a dry run plans (Snakemake's own decision, nothing run)."""
    result = run(["snakemake", "--cores", "2", "--dry-run"], cwd=project)
    lines = re.findall(r"^\s+output: (.+)$", result.stdout, flags=re.M)
    return {path for line in lines for path in line.split(", ")}


@pytest.fixture(scope="module")
def built(tmp_path_factory, built_212):
    """Snakemake adds 213, 214 and 210 to a copy of the shared build of 212."""
    project = copy_built(built_212, tmp_path_factory.mktemp("cache") / "project", small_registry())
    first = run(["snakemake", "--cores", "2"], cwd=project)
    # Shared model: 210 trains nothing of its own.
    assert "results/synthetic/210/model.pt" not in first.stdout + first.stderr
    assert not (project / "results/synthetic/210/model.pt").exists()
    assert (project / "results/synthetic/210/metrics.json").exists()
    return project


@pytest.fixture
def project(built, tmp_path):
    """A copy of the built project (timestamps kept), so each test edits its own."""
    return copy_built(built, tmp_path / "project")


def test_second_run_plans_nothing(project):
    assert planned_outputs(project) == set()


def test_editing_one_experiment_reruns_its_chain_and_the_report(project):
    edit_params(project, lambda p: p["experiments"]["213"]["model"].update(pooling="avg"))
    planned = planned_outputs(project)
    trained = {p for p in planned if p.endswith("model.pt")}
    assert trained == {"results/synthetic/213/model.pt", "results/synthetic/214/model.pt"}
    assert "results/synthetic/212/features.h5" not in planned
    assert "results/synthetic/demo/report.md" in planned


def test_evaluation_only_edit_reevaluates_without_retraining(project):
    edit_params(project, lambda p: p["experiments"]["214"].update(eval={"single_shot": True}))
    planned = planned_outputs(project)
    assert not any(p.endswith(("model.pt", "features.h5")) for p in planned)
    assert "results/synthetic/214/metrics.json" in planned
    assert "results/synthetic/213/metrics.json" not in planned


def test_euclidean_variant_equals_its_model_owner(project):
    cosine = json.loads((project / "results/synthetic/214/metrics.json").read_text())
    euclidean = json.loads((project / "results/synthetic/210/metrics.json").read_text())
    assert euclidean == cosine  # the lab log's 210: "euclidean and cosine identical"
    report = (project / "results/synthetic/demo/report.md").read_text()
    assert "| 210 | 214 with euclidean distance [trains the same model as 214] |" in report


@pytest.mark.slurm
def test_slurm_profile_requests_a_gpu_per_training(slurm_plugin, tmp_path):
    project = write_project(tmp_path / "project", small_registry())
    result = run(
        ["snakemake", "--profile", "workflow/profiles/slurm", "--dry-run", "results/synthetic/213/metrics.json"],
        cwd=project,
    )
    train_job = result.stdout.split("rule train:")[1].split("rule ")[0]
    assert "gpu=1" in train_job and "slurm_partition=gpu" in train_job and "cpus_per_task=8" in train_job


def test_the_default_target_is_the_default_table_with_its_seeds_and_any_table_builds_by_name(tmp_path):
    """The demo's shape (default.table and datasets.<ds>.seeds) in Snakemake's own plan: the
    default target trains the table's entries (214 without 213 in the table still trains alone:
    only 213's config is inherited), the extra seed's run, and reports exactly those; an entry in no
    table stays a target away, and Snakemake names it at the start; a table of the user's is a
    target of its own."""
    params = small_registry()
    params["tables"] |= {"demo": ["212", "214", "210"], "mine": ["213", "214"]}
    params["tables"].pop("lab_log")
    params["tables"].pop("modules")
    params["datasets"]["synthetic"]["seeds"] = {"212": [1, 2]}
    project = write_project(tmp_path / "project", params)
    trained = {path for path in planned_outputs(project) if path.endswith("model.pt")}
    assert trained == {f"results/synthetic/{run}/model.pt" for run in ("212", "212@2", "214")}
    dry = run(["snakemake", "--cores", "2", "--dry-run", "--printshellcmds"], cwd=project)
    assert "--out results/synthetic/demo --prepared data/prepared/synthetic --experiments 212 214 210" in dry.stdout
    assert "in no table of params.yaml, so built only when named: 213" not in dry.stdout + dry.stderr
    alone = run(["snakemake", "--cores", "2", "--dry-run", "results/synthetic/213/metrics.json"], cwd=project)
    assert "results/synthetic/213/model.pt" in alone.stdout
    table = run(["snakemake", "--cores", "2", "--dry-run", "--printshellcmds", "mine"], cwd=project).stdout
    assert "results/synthetic/213/model.pt" in table and "results/synthetic/212/model.pt" not in table
    listed = re.search(r"--out results/synthetic/mine .*--experiments ([\d ]+?) 2>", table)
    assert listed and listed.group(1).split() == ["213", "214"], table
    edit_params(project, lambda p: p["tables"].pop("mine"))
    named = run(["snakemake", "--cores", "2", "--dry-run"], cwd=project)
    assert "in no table of params.yaml, so built only when named: 213" in named.stdout + named.stderr


def test_workflow_lints_clean():
    from helpers import REPO

    result = run(["snakemake", "--lint"], cwd=REPO)
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


def test_killed_snakemake_resumes_training_and_completes(tmp_path):
    params = small_registry()
    params["datasets"]["synthetic"]["schedule_scale"] = 0.1  # 6 epochs: room for a kill in between
    project = write_project(tmp_path / "project", params)
    target = "results/synthetic/212/metrics.json"
    checkpoint = project / "results/synthetic/212/checkpoint.pt"
    # Snakemake's `ccreid train` job runs under tests/killpoint.py (through a `ccreid` first on
    # PATH), which SIGKILLs the job's process group, Snakemake with it, as the second epoch's
    # checkpoint is renamed into place: a fixed point mid-training, the first checkpoint there.
    shim = tmp_path / "bin" / "ccreid"
    shim.parent.mkdir()
    shim.write_text(
        f'#!/bin/sh\nif [ "$1" = train ]; then exec {sys.executable} {KILLPOINT} nth checkpoint.pt 2 -- "$@"; fi\n'
        f'exec {shutil.which("ccreid")} "$@"\n'
    )
    shim.chmod(0o755)
    victim = subprocess.run(
        ["snakemake", "--cores", "2", target],
        cwd=project,
        start_new_session=True,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{shim.parent}:{os.environ['PATH']}"},
    )
    assert victim.returncode == -signal.SIGKILL, victim.stdout + victim.stderr
    assert checkpoint.exists() and not (project / "results/synthetic/212/model.pt").exists()
    run(["snakemake", "--unlock"], cwd=project)  # a SIGKILLed Snakemake leaves its lock behind
    run(["snakemake", "--cores", "2", target], cwd=project)
    assert "resuming from" in (project / "logs/synthetic/212/train.log").read_text()
    assert (project / target).exists() and not checkpoint.exists()

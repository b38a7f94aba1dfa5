"""The whole pipeline through the real orchestrators, on a tiny synthetic set in a temp dir."""

from __future__ import annotations

import json
import shutil

import pytest

from helpers import REPO, copy_built, edit_params, run

pytestmark = pytest.mark.slow

TARGET = "results/synthetic/212/metrics.json"
METRIC_KEYS = {"mAP", "mINP", "R1", "R5", "R10", "R20", "queries", "skipped"}


def check_metrics(path):
    metrics = json.loads(path.read_text())
    assert set(metrics) == {"cc", "sc"}
    for values in metrics.values():
        assert METRIC_KEYS <= set(values)
        assert all(0.0 <= values[k] <= 1.0 for k in METRIC_KEYS - {"queries", "skipped"})
        assert values["queries"] > 0
    return metrics


def test_snakemake_builds_one_result_then_does_nothing(built_212, tmp_path):
    project = copy_built(built_212, tmp_path / "project")
    check_metrics(project / TARGET)
    for artefact in (
        "data/raw/synthetic/rgb/train",
        "data/prepared/synthetic/images.h5",
        "results/synthetic/212/model.pt",
        "results/synthetic/212/features.h5",
    ):
        assert (project / artefact).exists(), artefact
    again = run(["snakemake", "--cores", "2", "--dry-run", TARGET], cwd=project)
    assert "Nothing to be done" in again.stdout + again.stderr


def test_snakemake_names_where_a_missing_dataset_goes(project):
    result = run(["snakemake", "--cores", "1", "results/prcc/212/metrics.json"], cwd=project, check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "data/raw/prcc" in output and "docs/datasets.md" in output
    assert not (project / "results/prcc").exists()


def test_dvc_repro_in_a_fresh_git_repository(project):
    """The selected run through DVC alone: its runs table written, `dvc repro headline` builds it."""
    shutil.copytree(REPO / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    run(["git", "init", "-q"], cwd=project)
    run(["dvc", "init", "-q"], cwd=project)
    run(["ccreid", "dvc", "sync"], cwd=project)
    run(["git", "add", "-A"], cwd=project)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "project"], cwd=project)
    run(["dvc", "repro", "headline"], cwd=project)
    metrics = check_metrics(project / "results/synthetic/212/metrics.json")
    headline = json.loads((project / "metrics.json").read_text())
    assert headline["cc"] == metrics["cc"] and headline["exp"] == "212"
    status = run(["dvc", "status", "--with-deps", "headline"], cwd=project)
    assert "up to date" in status.stdout


def test_reranking_switch_changes_only_evaluation(built_212, tmp_path):
    project = copy_built(built_212, tmp_path / "project")
    plain = json.loads((project / TARGET).read_text())
    edit_params(project, lambda params: params["experiments"]["212"].update(eval={"rerank": True}))
    again = run(["snakemake", "--cores", "2", TARGET], cwd=project)
    log = again.stdout + again.stderr
    assert "rule train:" not in log and "rule extract:" not in log and "rule evaluate:" in log
    reranked = check_metrics(project / TARGET)
    assert reranked["cc"]["queries"] == plain["cc"]["queries"] and reranked != plain

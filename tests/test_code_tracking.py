"""A cached result is rebuilt when the code its stage runs changed, and only then: Snakemake's own
plan after an edit of a copy of the package (docs/reliability.md)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import REPO, TEST_ENV, edit_params, run, tiny_params, write_project

RUN_DIR = "results/synthetic/213"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A tiny registry (212, 213) built by Snakemake with a copy of the package on PYTHONPATH, so
    a test can edit the code the workflow runs."""
    root = tmp_path_factory.mktemp("code")
    params = tiny_params()
    params["experiments"] = {key: params["experiments"][key] for key in ("212", "213")}
    project = write_project(root / "project", params)
    # Inside the project, where dvc.yaml's config stage looks for it (src/ccreid).
    shutil.copytree(REPO / "src", project / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    env = {"PYTHONPATH": str(project / "src")}
    run(["snakemake", "--cores", "2"], cwd=project, env=env, timeout=900)
    return project, project / "src" / "ccreid", env


def planned(project: Path, env: dict) -> dict[str, list[list[str]]]:
    """The jobs per rule that `snakemake -n` would run, each as its outputs (the target rule
    `all` left out). Read from the plan, not from `--list-changes params`: Snakemake 9.27 lists
    the last output of every job there, changed or not (its ParamsChange keeps the file of an
    empty change)."""
    out = run(["snakemake", "-n", "--cores", "2"], cwd=project, env=env).stdout
    jobs: dict[str, list[list[str]]] = {}
    rule = None
    for line in out.splitlines():
        if line.startswith("rule ") and line.endswith(":"):
            rule = line[len("rule ") : -1]
        elif rule and rule != "all" and line.strip().startswith("output:"):
            jobs.setdefault(rule, []).append([path.strip() for path in line.split(":", 1)[1].split(",")])
    return jobs


def plan(project: Path, env: dict) -> dict[str, int]:
    """Jobs per rule that `snakemake -n` would run."""
    return {rule: len(outputs) for rule, outputs in planned(project, env).items()}


def edited(path: Path, old: str, new: str):
    """Replace `old` by `new` in `path` while the block runs."""
    original = path.read_text()
    assert old in original, f"{old!r} not in {path}"

    class Edit:
        def __enter__(self):
            path.write_text(original.replace(old, new, 1))

        def __exit__(self, *exc):
            path.write_text(original)

    return Edit()


def test_nothing_to_do_after_the_build(built):
    project, _, env = built
    assert plan(project, env) == {}


def test_planning_imports_neither_torch_nor_torchvision(built, tmp_path):
    """A no-op rerun costs what planning imports: with torch and torchvision made unimportable,
    Snakemake still plans the built registry, and finds nothing to do."""
    project, _, env = built
    for name in ("torch", "torchvision"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise ImportError('planning imported {name}')\n")
    blocked = env | {"PYTHONPATH": f"{tmp_path}:{env['PYTHONPATH']}"}
    out = run(["snakemake", "--cores", "1"], cwd=project, env=blocked)
    assert "Nothing to be done" in out.stdout + out.stderr


def test_a_behaviour_change_in_the_gates_retrains_and_snakemake_names_the_rules(built):
    project, package, env = built
    with edited(package / "models" / "gates.py", "nn.Sigmoid()", "nn.Hardsigmoid()"):
        jobs = planned(project, env)
        reasons = run(["snakemake", "-n", "--cores", "2"], cwd=project, env=env).stdout
    assert {"train", "extract", "evaluate"} <= set(jobs), jobs
    assert [f"{RUN_DIR}/model.pt"] in jobs["train"]
    assert "Params have changed since last execution" in reasons


def test_docstring_and_comment_edits_rebuild_nothing(built):
    project, package, env = built
    gates, trainer = package / "models" / "gates.py", package / "engine" / "trainer.py"
    with (
        edited(gates, '"""', '"""A docstring edit. '),
        edited(trainer, "import numpy as np", "import numpy as np  # a comment"),
    ):
        assert plan(project, env) == {}


@pytest.mark.parametrize(
    "module, anchor", [("rerank.py", "def k_reciprocal_rerank("), ("metrics.py", "def query_ranks(")]
)
def test_a_rerank_or_metrics_edit_reevaluates_without_retraining_or_reextracting(built, module, anchor):
    project, package, env = built
    with edited(package / "evaluation" / module, anchor, "_EDITED = 1\n\n\n" + anchor):
        jobs = plan(project, env)
    assert "evaluate" in jobs and "train" not in jobs and "extract" not in jobs, jobs


def test_a_metrics_edit_retrains_the_runs_that_evaluate_during_training(built):
    """With eval.test_every on, training writes test curves with the metrics code: then, and only
    for those runs, a metrics edit retrains."""
    project, package, env = built
    original = (project / "params.yaml").read_text()
    try:
        edit_params(project, lambda p: p["experiments"]["213"].update({"eval": {"test_every": 1}}))
        run(["snakemake", "--cores", "2", f"{RUN_DIR}/metrics.json"], cwd=project, env=env, timeout=900)
        with edited(package / "evaluation" / "metrics.py", "def query_ranks(", "_EDITED = 1\n\n\ndef query_ranks("):
            jobs = planned(project, env)
        assert jobs["train"] == [[f"{RUN_DIR}/model.pt"]], jobs
    finally:
        (project / "params.yaml").write_text(original)
        run(["snakemake", "--cores", "2", f"{RUN_DIR}/metrics.json"], cwd=project, env=env, timeout=900)


def test_a_data_set_edit_rebuilds_only_what_reads_the_edited_key(built):
    """A training override of the data set retrains its runs without synthesizing or preparing the
    set again; its `obtain` note rebuilds nothing. (Before, the synth and prepare rules' params
    held the whole data set section: either edit re-planned the set and everything after it.)"""
    project, _, env = built
    original = (project / "params.yaml").read_text()
    before = plan(project, env)  # the report, when an earlier test rebuilt a result without it
    try:
        edit_params(project, lambda p: p["datasets"]["synthetic"]["overrides"]["train"].update(lr=1.0e-3))
        jobs = plan(project, env)
        assert jobs == {"train": 2, "extract": 2, "evaluate": 2, "report": 1}, jobs
        (project / "params.yaml").write_text(original)
        edit_params(project, lambda p: p["datasets"]["synthetic"].update(obtain="drawn by ccreid synth"))
        assert plan(project, env) == before
    finally:
        (project / "params.yaml").write_text(original)


def test_a_report_edit_rebuilds_only_the_report(built):
    project, package, env = built
    with edited(package / "reporting" / "ablation.py", "MAX_CMC_OTHERS = 5", "MAX_CMC_OTHERS = 4"):
        assert plan(project, env) == {"report": 1}


def test_the_copy_is_what_the_workflow_imports(built):
    """Guard of the fixture: the edits above reach the workflow only through PYTHONPATH."""
    project, package, env = built
    out = run(["python", "-c", "import ccreid; print(ccreid.__file__)"], cwd=project, env=env).stdout
    assert Path(out.strip()).parent == package
    assert yaml.safe_load((project / "params.yaml").read_text())["experiments"].keys() == {"212", "213"}


def dvc_changed_stages(project: Path, env: dict) -> set[str]:
    """The stage groups `dvc status` reports (train for train@synthetic-213, ...) after the config
    stage ran (it writes each stage's config and code hash; the later stages depend on those)."""
    run(["dvc", "repro", "--single-item", "config"], cwd=project, env=env)
    out = run(["dvc", "status", "--json"], cwd=project, env=env).stdout
    return {name.split("@")[0] for name in json.loads(out or "{}")}


def test_dvc_status_agrees_with_snakemake(built):
    """The same edits, asked of DVC: a gate change makes training and extraction stale, a
    re-ranking edit evaluation only, a docstring edit nothing; and recording Snakemake's results
    in DVC rebuilt nothing."""
    project, package, env = built
    env = env | TEST_ENV
    if not (project / ".dvc").is_dir():
        run(["git", "init", "-q"], cwd=project, env=env)
        run(["dvc", "init", "-q"], cwd=project, env=env)
        edit_params(project, lambda p: p["run"].update({"exp": "213"}))
        recorded = run(["ccreid", "dvc", "record"], cwd=project, env=env)
        assert "recorded 8 stage(s)" in recorded.stdout  # synth, prepare and 212's and 213's three each
    assert dvc_changed_stages(project, env) == set()
    with edited(package / "models" / "gates.py", '"""', '"""A docstring edit. '):
        assert dvc_changed_stages(project, env) == set()
    # DVC names the stages whose own dependencies changed; evaluate follows once extract rewrites
    # features.h5 (its dependency), as in Snakemake's plan.
    with edited(package / "models" / "gates.py", "nn.Sigmoid()", "nn.Hardsigmoid()"):
        assert dvc_changed_stages(project, env) == {"train", "extract"}
    with edited(
        package / "evaluation" / "rerank.py", "def k_reciprocal_rerank(", "_E = 1\n\n\ndef k_reciprocal_rerank("
    ):
        assert dvc_changed_stages(project, env) == {"evaluate"}
    assert dvc_changed_stages(project, env) == set()

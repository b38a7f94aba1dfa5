"""A cached result is rebuilt when the code its stage runs changed, and only then: Snakemake's own
plan after an edit of a copy of the package (docs/reliability.md)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from conftest import REPO, run, tiny_params, write_project

RUN_DIR = "results/synthetic/213"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A tiny registry (212, 213) built by Snakemake with a copy of the package on PYTHONPATH, so
    a test can edit the code the workflow runs."""
    root = tmp_path_factory.mktemp("code")
    shutil.copytree(REPO / "src", root / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    params = tiny_params()
    params["experiments"] = {key: params["experiments"][key] for key in ("212", "213")}
    project = write_project(root / "project", params)
    env = {"PYTHONPATH": str(root / "src")}
    run(["snakemake", "--cores", "2"], cwd=project, env=env, timeout=900)
    return project, root / "src" / "ccreid", env


def plan(project: Path, env: dict) -> dict[str, int]:
    """Jobs per rule that `snakemake -n` would run (the target rule `all` left out)."""
    out = run(["snakemake", "-n", "--cores", "2"], cwd=project, env=env).stdout
    jobs = {}
    for line in out.splitlines():
        if line.startswith("rule ") and line.endswith(":"):
            name = line[len("rule "):-1]
            if name != "all":
                jobs[name] = jobs.get(name, 0) + 1
    return jobs


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


def test_a_behaviour_change_in_the_gates_retrains_and_snakemake_names_the_rules(built):
    project, package, env = built
    with edited(package / "models" / "gates.py", "nn.Sigmoid()", "nn.Hardsigmoid()"):
        jobs = plan(project, env)
        changed = run(["snakemake", "--list-changes", "params"], cwd=project, env=env).stdout
    assert {"train", "extract", "evaluate"} <= set(jobs), jobs
    assert f"{RUN_DIR}/model.pt" in changed


def test_docstring_and_comment_edits_rebuild_nothing(built):
    project, package, env = built
    gates, trainer = package / "models" / "gates.py", package / "train.py"
    with edited(gates, '"""', '"""A docstring edit. '), edited(trainer, "import numpy as np", "import numpy as np  # a comment"):
        assert plan(project, env) == {}


def test_a_metrics_edit_reevaluates_without_retraining_or_reextracting(built):
    project, package, env = built
    with edited(package / "rerank.py", "def k_reciprocal_rerank(", "_EDITED = 1\n\n\ndef k_reciprocal_rerank("):
        jobs = plan(project, env)
    assert "evaluate" in jobs and "train" not in jobs and "extract" not in jobs, jobs


def test_a_report_edit_rebuilds_only_the_report(built):
    project, package, env = built
    with edited(package / "report.py", "MAX_CMC_OTHERS = 5", "MAX_CMC_OTHERS = 4"):
        assert plan(project, env) == {"report": 1}


def test_the_copy_is_what_the_workflow_imports(built):
    """Guard of the fixture: the edits above reach the workflow only through PYTHONPATH."""
    project, package, env = built
    out = run(["python", "-c", "import ccreid; print(ccreid.__file__)"], cwd=project, env=env).stdout
    assert Path(out.strip()).parent == package
    assert yaml.safe_load((project / "params.yaml").read_text())["experiments"].keys() == {"212", "213"}

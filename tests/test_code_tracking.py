"""A cached result is rebuilt when the code its stage runs changed, and only then: Snakemake's own
plan (and DVC's status) after an edit of a copy of the package (docs/architecture.md, "Code
hashes"). A registry member is part of the code of the runs that select it and of no other: the
tiny registry here has a run without any gate (212), two with the gate `se_avgmax` (197, and 216
which also distils) and one with the gate `spatial` (198)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from helpers import REPO, TEST_ENV, copy_built, edit_params, only_experiments, run, tiny_params

pytestmark = pytest.mark.slow

RUN_DIR = "results/synthetic/216"
REGISTRY = ("212", "196", "197", "198", "213", "216")  # 196 and 213 are bases; 197, 198, 212, 216 are built
BUILT = ("212", "197", "198", "216")


def run_jobs(*runs: str) -> dict[str, int]:
    """The jobs `snakemake -n` plans when the given runs are stale: their train, extract and
    evaluate, and the table's report."""
    return {"train": len(runs), "extract": len(runs), "evaluate": len(runs), "report": 1} if runs else {}


@pytest.fixture(scope="module")
def built(tmp_path_factory, built_212):
    """A tiny registry built by Snakemake with a copy of the package on PYTHONPATH, so a test can
    edit the code the workflow runs (212 comes from the shared build: same code, same hashes)."""
    root = tmp_path_factory.mktemp("code")
    params = tiny_params()
    only_experiments(params, {key: params["experiments"][key] for key in REGISTRY})
    params["tables"]["demo"] = list(BUILT)
    for exp in ("196", "197", "198"):  # the gate line's 120 epochs at the tiny scale: 4 of them
        params["experiments"][exp]["train"] = {"epochs": 60, "milestones": [20, 40]}
    project = copy_built(built_212, root / "project", params)
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


def trained(jobs: dict[str, list[list[str]]]) -> set[str]:
    """The runs whose training the plan holds."""
    return {outputs[0].split("/")[2] for outputs in jobs.get("train", [])}


NEW_GATE = '''"""Gate `eca`: a new member file, which no run selects yet."""

from torch import nn

from ccreid.core.registry import gate


@gate("eca")
class Eca(nn.Module):
    def __init__(self, channels, reduction=16):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, 3, padding=1, bias=False)

    def forward(self, x):
        return self.conv(x.mean((2, 3)).unsqueeze(1)).squeeze(1).sigmoid()[:, :, None, None] * x
'''


def test_a_new_member_file_rebuilds_nothing(built):
    """Adding a gate (before: a class in models/gates.py, which every model imported, re-planned
    every training of the registry)."""
    project, package, env = built
    new = package / "models" / "gates" / "eca.py"
    new.write_text(NEW_GATE)
    try:
        assert plan(project, env) == {}
    finally:
        new.unlink()


def test_an_edit_of_a_gate_retrains_exactly_the_runs_that_use_it_and_snakemake_names_the_rules(built):
    project, package, env = built
    with edited(package / "models" / "gates" / "se_avgmax.py", "excitation(2 * channels", "excitation(2*channels"):
        assert plan(project, env) == {}  # formatting: the same code
    with edited(package / "models" / "gates" / "pooled.py", "nn.Sigmoid()", "nn.Hardsigmoid()"):
        jobs = planned(project, env)
        reasons = run(["snakemake", "-n", "--cores", "2"], cwd=project, env=env).stdout
    assert trained(jobs) == {"197", "216"}, jobs  # se_avgmax's shared base; not 212 (no gate) nor 198
    assert {rule: len(outputs) for rule, outputs in jobs.items()} == run_jobs("197", "216")
    assert "Params have changed since last execution" in reasons
    with edited(package / "models" / "gates" / "spatial.py", "nn.Sigmoid()", "nn.Hardsigmoid()"):
        assert trained(planned(project, env)) == {"198"}


def test_an_edit_of_a_loss_term_retrains_only_the_runs_with_it_on(built):
    project, package, env = built
    with edited(package / "engine" / "losses" / "distill.py", "temperature**2", "temperature**2 * 1.5"):
        assert plan(project, env) == run_jobs("216")
    with edited(package / "engine" / "losses" / "adversarial.py", "(1 - epsilon)", "(1.0 - epsilon)"):
        assert trained(planned(project, env)) == set(BUILT)  # every run here trains CAL's loss


def test_an_edit_of_the_resnet_backbone_retrains_every_run_on_it(built):
    project, package, env = built
    with edited(
        package / "models" / "backbones" / "resnet.py",
        "nn.init.ones_(module.weight)",
        "nn.init.constant_(module.weight, 1.0)",
    ):
        assert plan(project, env) == run_jobs(*BUILT)
    with edited(
        package / "models" / "backbones" / "osnet.py",
        "init_osnet_weights(self)",
        "init_osnet_weights(self)\n        self.edited = 1",
    ):
        assert plan(project, env) == {}  # no run here is on OSNet


def test_docstring_and_comment_edits_rebuild_nothing(built):
    project, package, env = built
    gates, trainer = package / "models" / "gates" / "se_avgmax.py", package / "engine" / "trainer.py"
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


def test_a_metrics_edit_retrains_the_runs_that_evaluate_during_training(built, tmp_path):
    """With eval.test_every on, training writes test curves with the metrics code: then, and only
    for those runs, a metrics edit retrains. (On a copy, package included: the module's project
    keeps its build.)"""
    project = copy_built(built[0], tmp_path / "project")
    package, env = project / "src" / "ccreid", {"PYTHONPATH": str(project / "src")}
    edit_params(project, lambda p: p["experiments"]["216"].update({"eval": {"test_every": 1}}))
    run(["snakemake", "--cores", "2", f"{RUN_DIR}/metrics.json"], cwd=project, env=env, timeout=900)
    with edited(package / "evaluation" / "metrics.py", "def query_ranks(", "_EDITED = 1\n\n\ndef query_ranks("):
        jobs = planned(project, env)
    assert jobs["train"] == [[f"{RUN_DIR}/model.pt"]], jobs


def test_a_data_set_edit_rebuilds_only_what_reads_the_edited_key(built):
    """A training override of the data set retrains its runs without synthesizing or preparing the
    set again; its `obtain` note rebuilds nothing. (Before, the synth and prepare rules' params
    held the whole data set section: either edit re-planned the set and everything after it.)"""
    project, _, env = built
    original = (project / "params.yaml").read_text()
    before = plan(project, env)
    try:
        edit_params(project, lambda p: p["datasets"]["synthetic"]["overrides"]["train"].update(lr=1.0e-3))
        jobs = plan(project, env)
        assert jobs == run_jobs(*BUILT), jobs
        (project / "params.yaml").write_text(original)
        edit_params(project, lambda p: p["datasets"]["synthetic"].update(obtain="drawn by ccreid synth"))
        assert plan(project, env) == before
    finally:
        (project / "params.yaml").write_text(original)


def test_a_report_edit_rebuilds_only_the_report(built):
    project, package, env = built
    with edited(package / "reporting" / "figures.py", "MAX_CMC_OTHERS = 5", "MAX_CMC_OTHERS = 4"):
        assert plan(project, env) == {"report": 1}


def test_the_copy_is_what_the_workflow_imports(built):
    """Guard of the fixture: the edits above reach the workflow only through PYTHONPATH."""
    project, package, env = built
    out = run(["python", "-c", "import ccreid; print(ccreid.__file__)"], cwd=project, env=env).stdout
    assert Path(out.strip()).parent == package
    assert yaml.safe_load((project / "params.yaml").read_text())["experiments"].keys() == set(REGISTRY)


def dvc_changed_stages(project: Path, env: dict) -> set[str]:
    """The stages of the built runs that `dvc status` reports (as `train@216`) after the config
    stage ran (it writes each stage's config and code hash; the later stages depend on those)."""
    run(["dvc", "repro", "--single-item", "config"], cwd=project, env=env)
    out = run(["dvc", "status", "--json"], cwd=project, env=env).stdout
    stages = {name.partition("@") for name in json.loads(out or "{}")}
    return {
        f"{group}@{key.removeprefix('synthetic-')}"
        for group, _, key in stages
        if key.removeprefix("synthetic-") in BUILT
    }


def stages_of(*runs: str, groups=("train", "extract")) -> set[str]:
    return {f"{group}@{run}" for run in runs for group in groups}


def test_dvc_status_agrees_with_snakemake(built):
    """The same edits, asked of DVC after it recorded Snakemake's builds (rebuilding nothing):
    training and extraction are stale exactly for the runs Snakemake retrains, a loss term's edit
    makes training stale (the features follow the model), a re-ranking edit evaluation only, a
    docstring edit nothing."""
    project, package, env = built
    env = env | TEST_ENV
    gate, distill = package / "models" / "gates" / "pooled.py", package / "engine" / "losses" / "distill.py"
    if not (project / ".dvc").is_dir():
        run(["git", "init", "-q"], cwd=project, env=env)
        run(["dvc", "init", "-q"], cwd=project, env=env)
        recorded = run(["ccreid", "dvc", "record"], cwd=project, env=env)
        # synth, prepare, and each built run's train, extract and evaluate: the bases 196 and 213 are not built
        assert f"recorded {2 + 3 * len(BUILT)} stage(s)" in recorded.stdout, recorded.stdout
    assert dvc_changed_stages(project, env) == set()
    with edited(gate, '"""', '"""A docstring edit. '):
        assert dvc_changed_stages(project, env) == set()
    # DVC names the stages whose own dependencies changed; evaluate follows once extract rewrites
    # features.h5 (its dependency), as in Snakemake's plan.
    with edited(gate, "nn.Sigmoid()", "nn.Hardsigmoid()"):
        assert dvc_changed_stages(project, env) == stages_of("197", "216")
    with edited(distill, "temperature**2", "temperature**2 * 1.5"):
        assert dvc_changed_stages(project, env) == stages_of("216", groups=("train",))
    with edited(
        package / "models" / "backbones" / "resnet.py",
        "nn.init.ones_(module.weight)",
        "nn.init.constant_(module.weight, 1.0)",
    ):
        assert dvc_changed_stages(project, env) == stages_of(*BUILT)
    with edited(
        package / "evaluation" / "rerank.py", "def k_reciprocal_rerank(", "_E = 1\n\n\ndef k_reciprocal_rerank("
    ):
        assert dvc_changed_stages(project, env) == stages_of(*BUILT, groups=("evaluate",))
    assert dvc_changed_stages(project, env) == set()

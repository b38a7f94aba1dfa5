"""Shared fixtures: a tiny but complete project (params.yaml + workflow + dvc.yaml) in a temp dir."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from ccreid.core.registry import registry
from ccreid.core.schema import RecipeCfg, deep_merge

REPO = Path(__file__).resolve().parents[1]

# git (and DVC's experiment commits) need an identity, which a fresh CI machine may lack;
TEST_ENV = {
    "GIT_AUTHOR_NAME": "ccreid tests",
    "GIT_AUTHOR_EMAIL": "tests@ccreid.invalid",
    "GIT_COMMITTER_NAME": "ccreid tests",
    "GIT_COMMITTER_EMAIL": "tests@ccreid.invalid",
    "DVC_NO_ANALYTICS": "1",
}  # and DVC must not try to phone home

# Tests run many small models; on 2 cores a second OpenMP thread mostly spins.
torch.set_num_threads(1)


def member(kind: str, name: str):
    """The class or function registered as `name` for `kind` (core/registry.py), imported."""
    return registry().load(registry().member(kind, name))


def recipe(**overrides) -> RecipeCfg:
    """The project's `defaults` recipe (params.yaml) with `overrides` deep-merged per section
    (`recipe(loss={"aux": {"enabled": True}}).loss`), validated as a run reads it."""
    defaults = yaml.safe_load((REPO / "params.yaml").read_text())["defaults"]
    return RecipeCfg.model_validate(deep_merge(defaults, overrides))


def build_backbone(name: str, pretrained: str = "none", last_stride: int = 1, width: float = 1.0):
    """Backbone `name` as a model build makes it: its member, contract-checked, initial weights loaded."""
    from ccreid.models.members import build_backbone as build

    model_cfg = recipe(model={"backbone": name, "pretrained": pretrained, "last_stride": last_stride, "width": width})
    return build(model_cfg.model, registry(), "test")


def tiny_params(params: dict | None = None, **synth_overrides) -> dict:
    """`params` (default: the project's params.yaml) with the synthetic set and schedule shrunk
    for tests (benchmarks/noop_rerun.py uses it too)."""
    if params is None:
        params = yaml.safe_load((REPO / "params.yaml").read_text())
    synthetic = params["datasets"]["synthetic"]
    # The demo's extra seeds name experiments a test may drop; a test sets its own.
    synthetic.pop("seeds", None)
    # The default target builds the whole registry, as a test's project holds only what it needs.
    params["tables"]["demo"] = list(params["experiments"])
    synthetic["synth"].update(
        {"train_ids": 8, "val_ids": 2, "test_ids": 4, "images_per_camera": 2, "height": 32, "width": 16}
        | synth_overrides
    )
    synthetic["size"] = [32, 16]
    # 60 epochs -> 2; milestones 20, 40 -> both at epoch 1 (not past the end); clothes/aux start at epoch 1
    synthetic["schedule_scale"] = 0.03
    params["defaults"]["train"]["images_per_id"] = 4
    params["defaults"]["train"]["bn_batch"] = 0  # tests vary the batch; ghost BatchNorm has its own tests
    params["defaults"]["eval"]["batch_size"] = 32
    return params


def only_experiments(params: dict, experiments: dict) -> dict:
    """`params` with exactly these experiments (id -> entry): every table keeps the ones it names
    (a table left empty goes), the default table (`demo`) is all of them."""
    params["experiments"] = experiments
    tables = {name: [exp for exp in ids if exp in experiments] for name, ids in params["tables"].items()}
    params["tables"] = {name: ids for name, ids in tables.items() if ids} | {"demo": list(experiments)}
    if params["default"]["baseline"] not in experiments:
        params["default"]["baseline"] = next(iter(experiments))
    return params


def engine_params(**synthetic) -> dict:
    """tiny_params with several batches per epoch (P=4, K=4, 8 ids × 18 images) at 64×32, for
    tests that drive the training engine; `synthetic` updates datasets.synthetic (schedule_scale)."""
    params = tiny_params(images_per_camera=6, height=64, width=32)
    params["datasets"]["synthetic"].update(size=[64, 32], **synthetic)
    params["defaults"]["train"]["ids_per_batch"] = 4
    return params


def write_project(root: Path, params: dict) -> Path:
    """A runnable project folder: params.yaml, workflow/ and dvc.yaml of this repo."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copytree(REPO / "workflow", root / "workflow", dirs_exist_ok=True)
    shutil.copytree(REPO / "plugins", root / "plugins", dirs_exist_ok=True)
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    return root


def edit_params(project: Path, change) -> None:
    """Apply `change(params_dict)` to the project's params.yaml."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    change(params)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def run(cmd: list[str], cwd: Path, check: bool = True, timeout: int = 600, env: dict | None = None, preexec_fn=None):
    """Run a real command (snakemake, dvc, ccreid) and return the CompletedProcess."""
    result = subprocess.run(
        cmd,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=preexec_fn,
        env={**os.environ, "OMP_NUM_THREADS": "1", **TEST_ENV, **(env or {})},
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture
def project(tmp_path) -> Path:
    return write_project(tmp_path / "project", tiny_params())


@pytest.fixture(scope="session")
def slurm_plugin() -> None:
    """The `slurm` extra: Snakemake needs its SLURM executor plugin even to plan with the profile."""
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        pytest.fail(
            "snakemake-executor-plugin-slurm is not installed: pip install -e '.[slurm]' (or leave these out: -m 'not slurm')",
            pytrace=False,
        )

"""What the tests share besides fixtures, and what benchmarks/ reuse of them: the tiny project
(params, folder, commands), its synthetic set synthesized and prepared, the members and recipes
as a run builds them, and the reference implementations the benchmarks time against."""

from __future__ import annotations

import contextlib
import io
import math
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import yaml

from ccreid import cli
from ccreid.core.registry import registry
from ccreid.core.schema import RecipeCfg, deep_merge
from ccreid.evaluation import stats

REPO = Path(__file__).resolve().parents[1]

# git (and DVC's experiment commits) need an identity, which a fresh CI machine may lack;
TEST_ENV = {
    "GIT_AUTHOR_NAME": "ccreid tests",
    "GIT_AUTHOR_EMAIL": "tests@ccreid.invalid",
    "GIT_COMMITTER_NAME": "ccreid tests",
    "GIT_COMMITTER_EMAIL": "tests@ccreid.invalid",
    "DVC_NO_ANALYTICS": "1",
}  # and DVC must not try to phone home


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


def copy_built(built: Path, root: Path, params: dict | None = None) -> Path:
    """A copy of a built project at `root` (timestamps and Snakemake's records kept), holding
    `params` as its params.yaml if given: Snakemake then builds only what they add or change."""
    shutil.copytree(built, root, symlinks=True)
    if params is not None:
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
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


def call(argv: list[str], cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """`ccreid argv` in this process (in `cwd`, if given), as `run` runs a real process: for
    commands whose own process would mostly import torch (errors that fire before any data is
    read; short evaluations and drawings). Any exception other than the CLI's own exit
    (argparse's usage errors) propagates: that is a traceback, and fails."""
    stdout, stderr = io.StringIO(), io.StringIO()
    here = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
            try:
                status = cli.main(argv)
            except SystemExit as exit_:
                status = exit_.code
    finally:
        os.chdir(here)
    result = subprocess.CompletedProcess(["ccreid", *argv], status, stdout.getvalue(), stderr.getvalue())
    if check and status not in (0, None):
        raise AssertionError(f"ccreid {' '.join(argv)} failed ({status}):\n{result.stdout}\n{result.stderr}")
    return result


# --- evaluation: the textbook loop rank_metrics is tested against (benchmarks/eval_speed.py times it)
def reference_loop(dist, q_pids, g_pids, q_cams, g_cams, q_clothes, g_clothes, mode, max_rank=20, sort_kind="stable"):
    """The textbook evaluation: sort each row, drop junk, read AP / CMC / INP off the matches.
    (benchmarks/eval_speed.py times it as the baseline.)"""
    aps, inps, cmc, evaluated = [], [], np.zeros(max_rank), 0
    for i in range(len(q_pids)):
        order = np.argsort(dist[i], kind=sort_kind)
        same_pid = g_pids[order] == q_pids[i]
        other_cam = g_cams[order] != q_cams[i]
        if mode == "standard":
            good = same_pid & other_cam
        elif mode == "cc":
            good = same_pid & other_cam & (g_clothes[order] != q_clothes[i])
        else:
            good = same_pid & other_cam & (g_clothes[order] == q_clothes[i])
        kept = good[good | ~same_pid]
        if not kept.any():
            continue
        evaluated += 1
        hits = np.flatnonzero(kept)
        aps.append(np.mean(np.arange(1, len(hits) + 1) / (hits + 1)))
        inps.append(len(hits) / (hits[-1] + 1))
        cmc[hits[0] :] += 1
    return {
        "mAP": np.mean(aps),
        "mINP": np.mean(inps),
        "cmc": cmc / evaluated,
        "queries": evaluated,
        "skipped": len(q_pids) - evaluated,
    }


# --- intervals: a null simulation of the 95 % `*` (tests/test_stats.py, benchmarks/interval_calibration.py)
# Per-query values x[k, i, j] of experiment k, run (seed) i, query j:
#   difficulty[j] (shared by both experiments, skewed like APs) + method_query[k, j]
#   + seed_effect[k, i] + noise[k, i, j].
# Paired by seed, run i of both experiments shares half of its seed effect and of its per-query
# noise (same initial weights and batches). Under the null both experiments are the same method.
REGIMES = {
    # thousands of queries, as real test sets: the seeds decide
    "seed-dominated": {"queries": 2000, "seed_sd": 0.02, "method_query_sd": 0.03, "noise_sd": 0.1},
    # the demo's ~140 cc queries and little seed spread: the queries decide
    "query-dominated": {"queries": 140, "seed_sd": 0.004, "method_query_sd": 0.05, "noise_sd": 0.15},
}
SEEDS = (2, 3, 5, 10)
SHARED = 0.5  # the part of a seed's effect and noise two experiments of the same seed share
CHUNK_VALUES = 1 << 23  # values per simulated chunk of trials: bounds memory to ~200 MB


def simulated_pairs(rng, regime: dict, seeds: int, paired: bool, trials: int, effect: float = 0.0):
    """(a, b), each trials × seeds × queries, from the hierarchical model above; b better by `effect`."""
    queries = regime["queries"]
    difficulty = rng.beta(2, 5, (trials, 1, queries)).astype(np.float32)
    share = SHARED if paired else 0.0

    def part(sd: float, shape: tuple, common: np.ndarray | None):
        own = rng.standard_normal(shape, dtype=np.float32) * np.float32(sd * math.sqrt(1 - share))
        return own if common is None else own + common

    seed_common = rng.standard_normal((trials, seeds, 1), dtype=np.float32) * np.float32(
        regime["seed_sd"] * math.sqrt(share)
    )
    noise_common = (
        rng.standard_normal((trials, seeds, queries), dtype=np.float32)
        * np.float32(regime["noise_sd"] * math.sqrt(share))
        if paired
        else None
    )

    def experiment(shift: float):
        method = rng.standard_normal((trials, 1, queries), dtype=np.float32) * np.float32(regime["method_query_sd"])
        return (
            difficulty
            + method
            + part(regime["seed_sd"], (trials, seeds, 1), seed_common if paired else None)
            + part(regime["noise_sd"], (trials, seeds, queries), noise_common)
            + np.float32(shift)
        )

    return experiment(0.0), experiment(effect)


def rejection_rate(regime: dict, seeds: int, paired: bool, trials: int, rng, effect: float = 0.0) -> dict:
    """Share of simulated pairs whose 95 % interval excludes 0 (the report's `*`), and the mean width."""
    chunk = max(1, CHUNK_VALUES // (seeds * regime["queries"]))
    marked, widths = 0, []
    for start in range(0, trials, chunk):
        a, b = simulated_pairs(rng, regime, seeds, paired, min(chunk, trials - start), effect)
        result = stats.difference_interval(a, b, same_seeds=paired)
        marked += int(result.excludes_zero.sum())
        widths.append(result.high - result.low)
    return {"rate": marked / trials, "width": float(np.concatenate(widths).mean())}

"""Fixtures and hooks only (the shared functions are in helpers.py): a tiny but complete project
(params.yaml + workflow + dvc.yaml) in a temp dir, its synthetic sets and its run 212, each built
once per test run and shared by the workers."""

from __future__ import annotations

import gc
import hashlib
import importlib.util
import json
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest
from filelock import FileLock

from ccreid.core.sections import PREPARE_KEYS
from helpers import run, tiny_params, write_project


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> None:
    """Tests run many small models; on 2 cores a second OpenMP thread mostly spins. A fixture, not
    an import-time call, so that `-n 2`'s controller, which runs no test, never imports torch."""
    import torch

    torch.set_num_threads(1)


# pytest's cache holds each test's seconds (setup, call and teardown) from the runs that ran it:
# the order below puts long modules first, so that short ones even out the two workers' ends.
TEST_SECONDS = "ccreid/test-seconds"
ran_seconds: dict[str, float] = {}


def cached_test_seconds(config: pytest.Config) -> dict[str, float]:
    """Read once, by `-n 2`'s controller, and handed to both workers: the two must collect the
    same order, even if another run rewrites the cache meanwhile."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        return workerinput[TEST_SECONDS]
    cache = getattr(config, "cache", None)  # None under -p no:cacheprovider
    return cache.get(TEST_SECONDS, {}) if cache is not None else {}


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    node.workerinput[TEST_SECONDS] = cached_test_seconds(node.config)


@pytest.hookimpl(trylast=True)  # after `-m` has deselected: the order is that of the tests that run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Modules in the order a `-n 2` worker should take them, each kept whole (its module
    fixtures are built once): the SLURM run first (it mostly waits on the cluster's scheduler,
    which the other worker's tests then fill), the other modules with a slow test next (the long
    pipelines start early), the quick files last. Within each group, the modules whose tests
    took longest in earlier runs come first (file order on a fresh clone)."""
    slurm = {item.path for item in items if "slurm_cluster" in getattr(item, "fixturenames", ())}
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    seconds = cached_test_seconds(config)
    module_seconds: Counter[Path] = Counter()
    for item in items:
        module_seconds[item.path] += seconds.get(item.nodeid, 0.0)
    items.sort(key=lambda item: (item.path not in slurm, item.path not in slow, -module_seconds[item.path]))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    ran_seconds[report.nodeid] = ran_seconds.get(report.nodeid, 0.0) + report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    cache = getattr(config, "cache", None)
    if cache is not None and not hasattr(config, "workerinput") and ran_seconds:
        seconds = cache.get(TEST_SECONDS, {}) | {nodeid: round(s, 3) for nodeid, s in ran_seconds.items()}
        cache.set(TEST_SECONDS, seconds)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Everything alive once the tests are collected (the imported modules, torch's among them,
    and the items) stays to the end: frozen, it is left out of every later garbage collection
    instead of being walked again by each, pytest's five at exit included (2 s a worker)."""
    gc.freeze()


@pytest.fixture
def project(tmp_path) -> Path:
    return write_project(tmp_path / "project", tiny_params())


def built_once(tmp_path_factory, name: str, build) -> Path:
    """The folder `name` of this test run, made by `build(folder)` for the first test of any
    worker that asks: the `-n 2` workers share it through a lock, and a failed build leaves
    nothing behind to be taken for a finished one."""
    shared = tmp_path_factory.getbasetemp()
    if "PYTEST_XDIST_WORKER" in os.environ:
        shared = shared.parent  # this run's folder, above each worker's own
    folder = shared / name
    with FileLock(shared / f"{name}.lock"):
        if not folder.exists():
            staging = shared / f"{name}.partial"
            shutil.rmtree(staging, ignore_errors=True)  # a failed build's
            build(staging)
            staging.rename(folder)
    return folder


@pytest.fixture(scope="session")
def synthetic_project(tmp_path_factory):
    """`synthetic_project(root, params, prepared=True)`: write_project(root, params) holding its
    `synthetic` set as `ccreid synth` (and `ccreid prepare`) write it. Each distinct set (synth:,
    root, layout, size, on_bad_image, plugins) is built once per test run, by the real commands,
    and copied: the copy is the test's to change."""

    def make(root: Path, params: dict, prepared: bool = True) -> Path:
        dataset = params["datasets"]["synthetic"]
        identity = {key: dataset.get(key) for key in ("synth", "root", *PREPARE_KEYS)} | {
            "plugins": params.get("plugins")
        }
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]

        def build(folder: Path) -> None:
            source = write_project(folder / "project", params)
            run(["ccreid", "synth", "--dataset", "synthetic"], cwd=source)
            run(["ccreid", "prepare", "--dataset", "synthetic"], cwd=source)

        source = built_once(tmp_path_factory, f"synthetic-{digest}", build) / "project"
        write_project(root, params)
        folders = [Path(dataset["root"])] + ([Path("data/prepared/synthetic")] if prepared else [])
        for folder in folders:
            shutil.copytree(source / folder, root / folder, symlinks=True)
        return root

    return make


@pytest.fixture(scope="session")
def built_212(tmp_path_factory) -> Path:
    """The tiny project after `snakemake` built 212's result from nothing (synth, prepare, train,
    extract, evaluate), once per test run (shared by the workers: `built_once`). Tests only copy
    it (timestamps and Snakemake's records kept), never run in it."""

    def build(folder: Path) -> None:
        project = write_project(folder / "project", tiny_params())
        run(["snakemake", "--cores", "2", "results/synthetic/212/metrics.json"], cwd=project)

    return built_once(tmp_path_factory, "built-212", build) / "project"


@pytest.fixture
def synthetic(tmp_path, synthetic_project) -> Path:
    """`project` with its synthetic set as `ccreid synth` writes it, not prepared."""
    return synthetic_project(tmp_path / "project", tiny_params(), prepared=False)


@pytest.fixture
def prepared(tmp_path, synthetic_project) -> Path:
    """`project` with its synthetic set synthesized and prepared."""
    return synthetic_project(tmp_path / "project", tiny_params())


@pytest.fixture(scope="session")
def slurm_plugin() -> None:
    """The `slurm` extra: Snakemake needs its SLURM executor plugin even to plan with the profile."""
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        pytest.fail(
            "snakemake-executor-plugin-slurm is not installed: pip install -e '.[slurm]' (or leave these out: -m 'not slurm')",
            pytrace=False,
        )

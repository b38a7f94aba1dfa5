"""Fault injection: SIGKILL at seeded random points of prepare, train, extract and evaluate, and
concurrent builds of the same output.

Each stage is first run undisturbed (the reference). Then, for each kill point, a copy of the
project as it stood before the stage runs the stage under tests/killpoint.py, which SIGKILLs
its process group at the point. After the kill, every file under a final name must equal the
reference's (a partial output may only sit under a temporary name, or be the stage's own
resumable state); the same command is then run again and the project must equal the
reference byte for byte, temporaries gone. The victims are processes of their own; the reruns
(and the other tests' plain stage runs) run the CLI in the test's process: the same command,
without a torch import each, and the reference it must equal came from a process.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from ccreid.core.atomic import exclusive
from helpers import TEST_ENV, call, edit_params, tiny_params, write_project

pytestmark = pytest.mark.slow

KILLPOINT = Path(__file__).with_name("killpoint.py")
STAGES = {
    "prepare": ["prepare", "--dataset", "synthetic"],
    "train": ["train", "--dataset", "synthetic", "--exp", "212"],
    "extract": ["extract", "--dataset", "synthetic", "--exp", "212"],
    "evaluate": ["evaluate", "--dataset", "synthetic", "--exp", "212"],
}
EVENT_KILLS, TIMED_KILLS = 5, 2
# A killed stage may leave these behind, unfinished by design: temporaries (removed by the next
# build of the same output), the training checkpoint and its live log (both resumed).
IN_PROGRESS = ("/.tmp-", "/.old-", "/checkpoint.pt", "/live/")


def snapshot(project: Path) -> dict[str, bytes]:
    """Every file the stages write, by path."""
    return {
        p.relative_to(project).as_posix(): p.read_bytes()
        for folder in ("data/prepared", "results")
        for p in sorted((project / folder).rglob("*"))
        if p.is_file()
    }


def differences(found: dict[str, bytes], expected: dict[str, bytes]) -> list[str]:
    return sorted(path for path in found.keys() | expected.keys() if found.get(path) != expected.get(path))


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", **TEST_ENV}


def under_killpoint(project: Path, mode: str, value, stage: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(KILLPOINT), mode, str(value), "--", *STAGES[stage]],
        cwd=project,
        env=env(),
        capture_output=True,
        text=True,
        timeout=600,
        start_new_session=True,
    )  # the kill takes the stage's whole process group


@pytest.fixture(scope="module")
def reference(tmp_path_factory, synthetic_project) -> dict:
    """Per stage: a copy of the project before it ran, the project after it, its write profile."""
    base = tmp_path_factory.mktemp("faults")
    project = synthetic_project(base / "project", tiny_params(), prepared=False)
    stages = {}
    for stage in STAGES:
        before = shutil.copytree(project, base / f"before-{stage}")
        profile = base / f"{stage}-writes.json"
        result = under_killpoint(project, "count", profile, stage)
        assert result.returncode == 0, result.stderr
        stages[stage] = {"before": before, "after": snapshot(project), "profile": json.loads(profile.read_text())}
    return stages


def kill_points(stage: str, profile: dict) -> list[tuple[str, float]]:
    """Seeded: writes to die before, and delays after the first write (to land inside writes
    the audit hook does not see, such as HDF5 chunks)."""
    rng = random.Random(f"sigkill {stage}")
    events = sorted(rng.sample(range(1, profile["writes"] + 1), EVENT_KILLS))
    window = profile["last"] - profile["first"]
    delays = sorted(round(rng.uniform(0.05, 0.8) * window, 3) for _ in range(TIMED_KILLS))
    return [("event", n) for n in events] + [("after", d) for d in delays]


@pytest.mark.parametrize("stage", list(STAGES))
def test_sigkill_at_random_points_then_rerun_gives_the_undisturbed_outputs(stage, reference, tmp_path):
    expected = reference[stage]["after"]
    killed, resumed = [], 0
    for mode, value in kill_points(stage, reference[stage]["profile"]):
        project = shutil.copytree(reference[stage]["before"], tmp_path / f"{mode}-{value}")
        victim = under_killpoint(project, mode, value, stage)
        assert victim.returncode in (0, -signal.SIGKILL), victim.stderr
        if victim.returncode == -signal.SIGKILL:
            killed.append((mode, value))
            partial = [
                path
                for path in differences(snapshot(project), expected)
                if (project / path).exists() and not any(m in f"/{path}" for m in IN_PROGRESS)
            ]
            assert not partial, f"{stage} killed at {mode} {value} left incomplete final outputs: {partial}"
        rerun = call(STAGES[stage], cwd=project)
        resumed += "resuming from" in rerun.stderr
        assert differences(snapshot(project), expected) == [], f"{stage} rerun after {mode} {value}"
    assert len(killed) >= EVENT_KILLS, f"only {killed} of the points killed {stage}"
    if stage == "train":  # some kill came after a checkpoint, and training went on from it
        assert resumed >= 1


def test_kill_between_output_and_record_cannot_pass_a_stale_record(reference, tmp_path):
    """The record of an output is removed before the output changes: a metrics.json rebuilt for a
    new config but killed before its record is written is rebuilt, never taken as the old one."""
    project = shutil.copytree(reference["evaluate"]["before"], tmp_path / "project")
    call(STAGES["evaluate"], cwd=project)
    metrics = project / "results/synthetic/212/metrics.json"
    record = metrics.with_name("metrics.json.fingerprint.json")
    old = metrics.read_bytes(), record.read_bytes()
    # Rerank on: kill at the write that would record the new fingerprint (the last rename).
    edit_params(project, lambda p: p["experiments"]["212"].update(eval={"rerank": True}))
    count = tmp_path / "count.json"
    assert under_killpoint(project, "count", count, "evaluate").returncode == 0
    rerank_metrics = metrics.read_bytes()
    assert rerank_metrics != old[0]
    edit_params(project, lambda p: p["experiments"]["212"].update(eval={"rerank": False}))
    call(STAGES["evaluate"], cwd=project)
    edit_params(project, lambda p: p["experiments"]["212"].update(eval={"rerank": True}))
    writes = json.loads(count.read_text())["writes"]
    victim = under_killpoint(project, "event", writes - 1, "evaluate")  # before the record's rename
    assert victim.returncode == -signal.SIGKILL
    assert metrics.read_bytes() == rerank_metrics and not record.exists()
    edit_params(project, lambda p: p["experiments"]["212"].update(eval={"rerank": False}))
    call(STAGES["evaluate"], cwd=project)
    assert metrics.read_bytes() == old[0]


def test_truncated_output_is_rebuilt_not_taken_as_fresh(reference, tmp_path):
    project = shutil.copytree(reference["evaluate"]["before"], tmp_path / "project")
    features = project / "results/synthetic/212/features.h5"
    complete = features.read_bytes()
    features.write_bytes(complete[: len(complete) // 2])  # e.g. a copy cut short
    out = call(STAGES["extract"], cwd=project)
    assert features.read_bytes() == complete, out.stderr
    with h5py.File(features) as store:
        assert set(store) == {"gallery", "query_cc", "query_sc"}


# ------------------------------------------------------------------ concurrency
def start(project: Path, args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(args, cwd=project, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# What each stage locks while it builds (its output).
LOCKED = {
    "prepare": "data/prepared/synthetic",
    "train": "results/synthetic/212/model.pt",
    "extract": "results/synthetic/212/features.h5",
    "evaluate": "results/synthetic/212/metrics.json",
}
WAITING = "waiting for another process building"


def stderr_until_waiting(process: subprocess.Popen) -> str:
    """What `process` wrote to stderr up to its line saying it waits for the lock (all of it, if
    it ends without one). Blocking reads: nothing here depends on how fast the machine is."""
    lines = []
    for line in process.stderr:
        lines.append(line)
        if WAITING in line:
            break
    return "".join(lines)


@pytest.mark.parametrize("stage", list(STAGES))
def test_two_processes_building_the_same_output_build_it_once(reference, tmp_path, stage):
    """The test holds the output's lock while both processes start, so they always overlap: each
    finds the lock taken and waits; released, one builds and the other then finds it fresh."""
    project = shutil.copytree(reference[stage]["before"], tmp_path / "project")
    with exclusive(project / LOCKED[stage]):
        processes = [start(project, ["ccreid", *STAGES[stage]]) for _ in range(2)]
        # Read before the lock is released: a waiting process writes nothing more until then, so
        # no output is left in the pipe's reader that communicate() would not see.
        early = [stderr_until_waiting(process) for process in processes]
    outputs = []
    for process, before in zip(processes, early):
        stdout, stderr = process.communicate(timeout=300)
        outputs.append((stdout, before + stderr))
    assert [process.returncode for process in processes] == [0, 0], outputs
    assert all(WAITING in stderr for _, stderr in outputs), outputs
    assert differences(snapshot(project), reference[stage]["after"]) == []
    if stage == "train":  # trained once: the other found the model fresh
        assert sum("epoch 1/" in stderr for _, stderr in outputs) == 1, outputs


def test_two_snakemake_runs_sharing_one_data_folder_do_not_corrupt_it(reference, tmp_path):
    """Two clones of a project whose data/ is one shared folder (as on a cluster), each running
    Snakemake at once: both finish, and the shared prepared set equals the undisturbed one while
    both trainings read it."""
    shared = tmp_path / "shared-data"
    shutil.copytree(reference["prepare"]["before"] / "data", shared)
    clones = []
    for name in ("a", "b"):
        clone = write_project(tmp_path / name, tiny_params())
        (clone / "data").symlink_to(shared)
        clones.append(clone)
    target = "results/synthetic/212/metrics.json"
    runs = [start(clone, ["snakemake", "--cores", "1", target]) for clone in clones]
    outputs = [process.communicate(timeout=600) for process in runs]
    assert [process.returncode for process in runs] == [0, 0], outputs

    def prepared(files: dict[str, bytes]) -> dict[str, bytes]:  # Snakemake adds its timestamp file
        return {
            path: data
            for path, data in files.items()
            if path.startswith("data/prepared/") and not path.endswith("/.snakemake_timestamp")
        }

    assert differences(prepared(snapshot(clones[0])), prepared(reference["prepare"]["after"])) == []
    # Same data, same code: both clones trained and evaluated the same numbers.
    metrics = [(clone / target).read_bytes() for clone in clones]
    assert metrics[0] == metrics[1] == reference["evaluate"]["after"][target]

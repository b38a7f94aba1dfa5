"""SLURM for real: a single-node SLURM on this machine (.ci/slurm-up: Debian's slurmctld, slurmd,
slurmdbd on MariaDB, munge) runs a two-experiment project through workflow/profiles/slurm and
snakemake-executor-plugin-slurm. Every job must have been a SLURM job (the plugin's submission
lines, its per-job logs, and sacct's records agree), and every result must equal that of a local
`snakemake --cores 1` run byte for byte. See docs/scaling.md, "SLURM, tested".

Needs the `slurm` extra (the plugin), root and apt (the fixture runs .ci/slurm-up, a no-op when
.ci/run already did, and .ci/slurm-down after unless the cluster was up before); it fails, never
skips, where the plugin is missing or the cluster cannot be started."""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml

from helpers import REPO, only_experiments, run, tiny_params, write_project

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

ACCOUNT = "ccreid"  # .ci/slurm-up creates it and puts root in it
EXPERIMENTS = ("212", "210")
# Byte-compared between the SLURM and the local run: every metrics.json, the model, the report.
COMPARED = [f"results/synthetic/{exp}/metrics.json" for exp in EXPERIMENTS] + [
    "results/synthetic/212/model.pt",
    "results/synthetic/demo/report.md",
]


def registry() -> dict:
    """212 and 210 (212 evaluated with euclidean distance, sharing its model): every rule but the
    `weights` download (the tiny models train from scratch), two jobs at once (extract, evaluate)."""
    params = tiny_params()
    return only_experiments(
        params,
        {
            "212": params["experiments"]["212"],
            "210": {"base": "212", "note": "212 with euclidean distance", "eval": {"distance": "euclidean"}},
        },
    )


def fit_profile_to_node(project: Path) -> dict:
    """The shipped profile with its requests scaled to this node (2 CPUs, no GPU): one CPU per job
    (the threads of the local `--cores 1` run), 2 GB, `gpu: 0` for train and extract; partitions
    stay the shipped `cpu` and `gpu` (slurm-up defines both). The plugin settings make status
    checks frequent (the defaults suit hour-long jobs) and keep the per-job logs as evidence."""
    path = project / "workflow/profiles/slurm/profile.yaml"
    profile = yaml.safe_load(path.read_text())
    assert profile["executor"] == "slurm"
    profile["default-resources"] |= {"slurm_account": ACCOUNT, "cpus_per_task": 1, "mem_mb": 2000}
    for resources in profile["set-resources"].values():
        resources |= {"cpus_per_task": 1, "mem_mb": 2000}
        if "gpu" in resources:
            resources["gpu"] = 0
    profile |= {
        "slurm-status-command": "sacct",  # the plugin's default where sacct exists, made explicit
        "slurm-init-seconds-before-status-checks": 2,
        "seconds-between-status-checks": 2,
        "slurm-keep-successful-logs": True,
    }
    path.write_text(yaml.safe_dump(profile, sort_keys=False))
    return profile


def controller_answers() -> bool:
    try:
        return subprocess.run(["scontrol", "ping"], capture_output=True, timeout=60).returncode == 0
    except FileNotFoundError:  # SLURM's tools not installed yet: slurm-up installs them
        return False


@pytest.fixture(scope="module")
def slurm_cluster():
    """The cluster up for the module, and after it as it was before: left running where it was
    (as `.ci/run` starts it), since with the plugin installed every Snakemake start asks
    `scontrol`, which waits about 9 s when no controller answers."""
    was_up = controller_answers()
    up = subprocess.run([str(REPO / ".ci/slurm-up")], capture_output=True, text=True, timeout=1200)
    if up.returncode != 0:
        pytest.fail(
            f".ci/slurm-up failed ({up.returncode}); it needs root and apt-get (Debian's slurm-wlm, "
            f"slurmdbd, munge, mariadb-server):\n{up.stdout}\n{up.stderr}",
            pytrace=False,
        )
    yield up.stdout
    if was_up:
        return
    down = subprocess.run([str(REPO / ".ci/slurm-down")], capture_output=True, text=True, timeout=300)
    assert down.returncode == 0, f".ci/slurm-down failed:\n{down.stdout}\n{down.stderr}"


def test_registry_through_slurm_equals_a_local_run(slurm_plugin, slurm_cluster, tmp_path):
    on_slurm = write_project(tmp_path / "slurm", registry())
    local = write_project(tmp_path / "local", registry())
    profile = fit_profile_to_node(on_slurm)
    since = f"{datetime.now() - timedelta(minutes=5):%Y-%m-%dT%H:%M:%S}"

    # The local reference runs meanwhile: one thread per job either way, so the numbers are the same.
    with ThreadPoolExecutor(1) as pool:
        reference = pool.submit(run, ["snakemake", "--cores", "1"], cwd=local, timeout=900)
        result = run(["snakemake", "--profile", "workflow/profiles/slurm"], cwd=on_slurm, timeout=900)
        local_log = reference.result().stderr
    log = result.stdout + result.stderr

    # Every job the local run ran (but `all`, which has no command) was submitted to SLURM once.
    local_jobs = Counter(rule for _, rule in re.findall(r"Finished jobid: (\d+) \(Rule: (\w+)\)", local_log))
    del local_jobs["all"]
    assert local_jobs == Counter(synth=1, prepare=1, train=1, extract=2, evaluate=2, report=1)
    finished = dict(re.findall(r"Finished jobid: (\d+) \(Rule: (\w+)\)", log))
    submitted = re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (.+?)\)\.", log)
    assert Counter(finished[job] for job, _, _ in submitted) == local_jobs, log
    assert set(finished) - {job for job, _, _ in submitted} == {
        job for job, rule in finished.items() if rule == "all"
    }, log
    slurm_rule = {slurm_id: finished[job] for job, slurm_id, _ in submitted}
    assert len(slurm_rule) == len(submitted)  # one SLURM job id per Snakemake job

    # The plugin's per-job log of each: SLURM's --output file, named by the SLURM job id.
    for job, slurm_id, logfile in submitted:
        assert Path(logfile).name == f"{slurm_id}.log"
        assert f"rule {finished[job]}:" in Path(logfile).read_text()

    # SLURM's accounting: each job completed, as the run's job name, in the partition the profile asks for.
    run_id = re.search(r"SLURM run ID: (\S+)", log).group(1)
    sacct = run(
        [
            "sacct",
            "-X",
            "--parsable2",
            "--noheader",
            "--format=JobIDRaw,State,Partition,Account",
            "--starttime",
            since,
            "--name",
            run_id,
        ],
        cwd=on_slurm,
    ).stdout
    records = {job: rest for job, *rest in (line.split("|") for line in sacct.splitlines())}
    assert set(records) == set(slurm_rule), sacct
    for slurm_id, rule in slurm_rule.items():
        partition = (
            profile["set-resources"]
            .get(rule, {})
            .get("slurm_partition", profile["default-resources"]["slurm_partition"])
        )
        assert records[slurm_id] == ["COMPLETED", partition, ACCOUNT], (rule, sacct)
    assert {"cpu", "gpu"} <= {partition for _, partition, _ in records.values()}

    for relative in COMPARED:
        assert (on_slurm / relative).read_bytes() == (local / relative).read_bytes(), relative

"""No-op reruns of the whole registry: Snakemake and DVC asked again once everything is built.

Builds (unless --project is given) a temporary project the way the tests do (tests/helpers.py
`tiny_params`, loaded from there): params.yaml — every registered experiment —
with the synthetic set shrunk to 8 train / 2 val / 4 test ids, 2 images per camera, 32×16 and
the schedule scaled by 0.03; workflow/, plugins/, dvc.yaml, .gitignore and src/, in a fresh git repository
with DVC initialised. These files come from the commit HEAD (`git archive`), not from the
working tree, which may be half-edited while the benchmark runs (--worktree takes the working
tree). Every command runs with PYTHONPATH=<project>/src, so the project is built, fingerprinted
and hashed by DVC from that one snapshot of the sources, with OMP_NUM_THREADS=1 and a git
identity in the environment.

Then, timed:
1. the build: `snakemake --cores N` (default N = 2), the registry trained, extracted, evaluated
   and reported (reported, no goal here);
2. no-ops, each --repeats times (median, min, max): `snakemake --cores all` (must say "Nothing to
   be done"), `snakemake -n`;
3. DVC: `dvc repro` once — dvc.yaml's stages are the registry (dvc_runs.yaml, written by `ccreid
   dvc sync`), which Snakemake's success hook recorded in dvc.lock and DVC's cache (`ccreid dvc
   record`), so it runs nothing; a stage it does run finds its output fresh and returns at once —
   then the no-ops, --repeats times: `dvc repro` (must run nothing) and `dvc status`;
4. `snakemake -n` once more, after DVC has cached the outputs: still nothing to do?

With --project PATH an existing, already built project is timed instead (its own src/ on
PYTHONPATH when it has one; the DVC steps only when it has a .dvc folder).

    nice python benchmarks/noop_rerun.py [--cores 2] [--repeats 3] [--worktree] [--keep DIR | --project PATH]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from common import REPO, test_helpers

helpers = test_helpers()  # the tests' tiny project, shared

GOAL_S = 3.0
ENV = {"OMP_NUM_THREADS": "1", **helpers.TEST_ENV}


def make_project(root: Path, worktree: bool) -> tuple[Path, str]:
    """The project under root, from HEAD (or the working tree); returns it and where it came from."""
    files = ["params.yaml", "workflow", "plugins", "dvc.yaml", ".gitignore", ".dvcignore", "src"]
    root.mkdir(parents=True)
    if worktree:
        source = "working tree"
        for name in files:
            if (REPO / name).is_dir():
                shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
            else:
                shutil.copy(REPO / name, root / name)
    else:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        source = f"commit {commit}"
        archive = subprocess.run(["git", "archive", "HEAD", *files], cwd=REPO, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    params = helpers.tiny_params(yaml.safe_load((root / "params.yaml").read_text()))
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for command in (
        ["git", "init", "-q"],
        ["dvc", "init", "-q"],
        ["ccreid", "dvc", "sync"],  # the runs table of these params
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "project"],
    ):
        run(command, root)
    return root, source


def run(command: list[str], cwd: Path, timeout: int = 3600) -> tuple[float, str]:
    """(wall seconds, stdout + stderr); a failure stops the benchmark with the output."""
    env = {**os.environ, **ENV}
    if (cwd / "src" / "ccreid").is_dir():
        env["PYTHONPATH"] = str(cwd / "src")
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - start
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}) in {cwd}:\n{output}")
    return seconds, output


def repeated(command: list[str], cwd: Path, repeats: int, must_say: str | None, must_not_say: str | None = None):
    times, outputs = [], []
    for _ in range(repeats):
        seconds, output = run(command, cwd)
        if must_say is not None and must_say not in output:
            raise SystemExit(f"{' '.join(command)}: expected {must_say!r} (not a no-op?):\n{output}")
        if must_not_say is not None and must_not_say in output:
            raise SystemExit(f"{' '.join(command)}: {must_not_say!r} found (not a no-op):\n{output}")
        times.append(seconds)
        outputs.append(output)
    return times, outputs[-1]


def row(name: str, times: list[float], note: str = "") -> None:
    median = statistics.median(times)
    met = "yes" if median < GOAL_S else "**no**"
    print(f"| `{name}` | {median:.2f} | {min(times):.2f}–{max(times):.2f} | {met} | {note} |", flush=True)


def fingerprint_records(project: Path) -> dict[Path, int]:
    """mtime of every stage fingerprint record: only a real rebuild rewrites one (DVC copies
    outputs into its cache, which changes outputs' mtimes, not these)."""
    records = [*project.glob("results/**/*.fingerprint.json"), *project.glob("data/**/fingerprint.json")]
    return {path: path.stat().st_mtime_ns for path in records}


def last_line(output: str) -> str:
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", type=int, default=2, help="cores for the build")
    parser.add_argument("--repeats", type=int, default=3)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--project", type=Path, help="time this existing, already built project")
    where.add_argument("--keep", type=Path, help="build the project here and keep it (default: a temp dir, removed)")
    parser.add_argument("--worktree", action="store_true", help="build from the working tree, not from HEAD")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ccreid-noop-") as tmp:
        if args.project:
            project, source = args.project.resolve(), "existing project"
        else:
            project, source = make_project((args.keep or Path(tmp) / "project").resolve(), args.worktree)
        experiments = yaml.safe_load((project / "params.yaml").read_text())["experiments"]
        print(f"project {project} ({source}): {len(experiments)} experiments; load average {os.getloadavg()[0]:.1f}")
        if not args.project:
            seconds, output = run(["snakemake", "--cores", str(args.cores)], project)
            jobs = [line for line in output.splitlines() if "steps" in line and "done" in line]
            print(
                f"build: `snakemake --cores {args.cores}` {seconds:.0f} s ({seconds / 60:.1f} min); "
                f"{jobs[-1].strip() if jobs else last_line(output)}; load average {os.getloadavg()[0]:.1f}",
                flush=True,
            )
        print(f"no-op reruns, {args.repeats} each, goal < {GOAL_S:g} s")
        print("| command | median (s) | min–max (s) | < 3 s? | note |")
        print("|---|---:|---:|---|---|")
        times, _ = repeated(["snakemake", "--cores", "all"], project, args.repeats, "Nothing to be done")
        row("snakemake --cores all", times, "Nothing to be done")
        times, _ = repeated(["snakemake", "-n"], project, args.repeats, "Nothing to be done")
        row("snakemake -n", times, "Nothing to be done")
        if (project / ".dvc").is_dir():
            before = fingerprint_records(project)
            seconds, output = run(["dvc", "repro"], project)
            stages = output.count("Running stage")
            after = fingerprint_records(project)
            rebuilt = [str(path.relative_to(project)) for path in after if before.get(path) != after[path]]
            outcome = (
                f"{len(rebuilt)} output(s) REBUILT: {', '.join(rebuilt)}"
                if rebuilt
                else "no fingerprint record rewritten: each returned on its fingerprint"
            )
            kind = "(not a no-op)" if stages else "(already recorded: a no-op)"
            print(
                f"| `dvc repro` (first, after Snakemake recorded the registry) | {seconds:.2f} | | {kind} | "
                f"{stages} stage command(s) run; {outcome} |",
                flush=True,
            )
            times, output = repeated(["dvc", "repro"], project, args.repeats, None, must_not_say="Running stage")
            row("dvc repro", times, last_line(output))
            times, output = repeated(["dvc", "status"], project, args.repeats, None)
            row("dvc status", times, last_line(output))
            seconds, output = run(["snakemake", "-n"], project)
            print(
                f"| `snakemake -n` after DVC | {seconds:.2f} | | {'yes' if seconds < GOAL_S else '**no**'} | "
                f"{'Nothing to be done' if 'Nothing to be done' in output else 'WORK PLANNED: ' + last_line(output)} |"
            )
        else:
            print(f"({project} has no .dvc folder: DVC not timed)")
        print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

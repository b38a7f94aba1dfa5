"""The test suite's own speed: the README's quick loop (or any marker selection) at HEAD against a
base commit, run in turn on this machine (base, head, base, head, …) so that both see the same
load, each from a clean checkout of its commit, beside which the lab log is linked where this
checkout has it (tests/test_gates.py reads it; docs/ablations.md). Prints each run's wall
and CPU seconds, the medians, and the median of the pairwise ratios head/base.

Both checkouts import their own `src/` (PYTHONPATH), whatever is installed. One warm-up run each
is not counted: it fills the file cache and the pytest cache from which the suite orders its
modules, as a developer's second run finds them."""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, cores


def checkout(commit: str, folder: Path) -> Path:
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--quiet", "--detach", str(folder), commit], check=True)
    return folder


def timed_run(folder: Path, command: list[str]) -> tuple[float, float]:
    """Wall and CPU (user + system of the finished children) seconds of one run; a run whose
    tests fail stops the benchmark (its figure would time something else)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(
        command, cwd=folder, env={**os.environ, "PYTHONPATH": str(folder / "src")}, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed in {folder} ({result.returncode}):\n{result.stdout[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit to compare HEAD against")
    parser.add_argument("--runs", type=int, default=3, help="counted runs of each (after one warm-up)")
    parser.add_argument(
        "--marker", default="not slow", help='pytest -m selection (default: the quick loop; "" for all)'
    )
    parser.add_argument("--workers", default="2", help="pytest -n")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    known = ["git", "-C", str(REPO), "rev-parse", "--quiet", "--verify", f"{args.base}^{{commit}}"]
    if subprocess.run(known, capture_output=True).returncode != 0:
        parser.error(f"--base {args.base!r} is not a commit of {REPO}")
    command = [sys.executable, "-m", "pytest", "-q", "-n", args.workers] + (["-m", args.marker] if args.marker else [])
    print(f"{' '.join(command[1:])}; {cores()} cores; base {args.base}, head HEAD; {args.runs} runs each")
    with tempfile.TemporaryDirectory(prefix="suite-speed-") as tmp:
        root = Path(tmp)
        if (REPO.parent / "shared").is_dir():
            (root / "shared").symlink_to(REPO.parent / "shared")  # the lab log the tests read
        folders: dict[str, Path] = {}
        try:
            folders["base"] = checkout(args.base, root / "base")
            folders["head"] = checkout("HEAD", root / "head")
            figures: dict[str, list[tuple[float, float]]] = {"base": [], "head": []}
            for run in range(args.runs + 1):
                for name, folder in folders.items():
                    wall, cpu = timed_run(folder, command)
                    if run > 0:
                        figures[name].append((wall, cpu))
                    print(f"{'warm-up' if run == 0 else f'run {run}'} {name}: {wall:.1f} s wall, {cpu:.1f} s CPU")
        finally:
            for folder in folders.values():
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(folder)], check=True)
    for name, runs in figures.items():
        walls, cpus = zip(*runs)
        print(
            f"{name}: median {statistics.median(walls):.1f} s wall ({min(walls):.1f}–{max(walls):.1f}), "
            f"{statistics.median(cpus):.1f} s CPU"
        )
    ratios = [head[0] / base[0] for head, base in zip(figures["head"], figures["base"])]
    print(f"head/base wall, pairwise: median {statistics.median(ratios):.3f} ({min(ratios):.3f}–{max(ratios):.3f})")


if __name__ == "__main__":
    main()

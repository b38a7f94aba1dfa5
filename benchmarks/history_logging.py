"""The training history's cost per step: ccreid's TrainingLog against DVCLive's `next_step` at every batch.

A training logs its loss terms and learning rate at every batch (one DVCLive row a step) and the
epoch's means at its last step. DVCLive's `next_step` syncs: it rewrites the summary and, for
Studio, re-reads every history file, even when no Studio is configured, so a sync per batch
costs a time that grows with the rows already written: quadratic in the steps. TrainingLog
advances the step per batch and syncs once an epoch (the history files are the same; tests/
test_train.py). Both write the same rows here (4 loss terms and the lr a step, 30 batches an
epoch, as the demo's 212), each into its own temporary folder; the time is the logging alone,
no training. The default step counts are the demo's 24 and 60 epochs; `--steps 8400 --batches
280` is 30 epochs of PRCC's (about 280 batches an epoch at P×K 8×8).

    nice python benchmarks/history_logging.py [--steps 720 1800] [--batches 30]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from dvclive import Live

from ccreid.engine.training_log import TrainingLog

TERMS = {"id": 4.0, "adversarial": 3.0, "clothes_classifier": 3.0, "total": 10.0}


def per_batch_sync(folder: Path, steps: int, batches: int) -> None:
    """ccreid's logging before 469b7d7: DVCLive's next_step after every batch."""
    live = Live(dir=str(folder), save_dvc_exp=False, dvcyaml=None, report=None)
    for step in range(steps):
        for key, value in TERMS.items():
            live.log_metric(f"train/{key}", value)
        live.log_metric("train/lr", 1e-3)
        if step % batches == batches - 1:
            for key, value in TERMS.items():
                live.log_metric(f"epoch/{key}", value)
        live.next_step()
    live.end()


def training_log(folder: Path, steps: int, batches: int) -> None:
    log = TrainingLog(folder, total_epochs=steps // batches, resume_step=None, enabled=True)
    for epoch in range(steps // batches):
        log.start_epoch(epoch, batches)
        for _ in range(batches):
            log.batch(TERMS, lr=1e-3)
        log.end_epoch(images=batches, validation={}, test={})
    log.close()


def seconds(write, steps: int, batches: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        write(Path(folder) / "live", steps, batches)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[720, 1800])
    parser.add_argument("--batches", type=int, default=30, help="batches an epoch")
    args = parser.parse_args()
    print("| steps | next_step per batch (s) | TrainingLog (s) | ratio |")
    print("|---:|---:|---:|---:|")
    for steps in args.steps:
        steps -= steps % args.batches
        old, new = seconds(per_batch_sync, steps, args.batches), seconds(training_log, steps, args.batches)
        print(f"| {steps} | {old:.2f} | {new:.2f} | {old / new:.1f}× |", flush=True)


if __name__ == "__main__":
    main()

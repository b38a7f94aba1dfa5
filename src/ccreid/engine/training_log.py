"""The training history: DVCLive files (per step and per epoch) and the progress display."""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

from ccreid.core.atomic import atomic_path


def _truncate_history(metrics_dir: Path, step: int) -> None:
    """Drop DVCLive history rows (``<metric>.tsv``) from `step` on: the steps of an epoch killed
    before its checkpoint are logged again when the epoch is replayed."""
    for path in Path(metrics_dir).rglob("*.tsv"):
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle, delimiter="\t")
            fields, rows = reader.fieldnames, [row for row in reader if int(row["step"]) < step]
        assert fields is not None, f"{path}: no header"  # DVCLive writes the header with the first row
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fields, delimiter="\t", lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)


class TrainingLog:
    """DVCLive history (per step: loss terms and lr; per epoch: their means, validation metrics)
    and the progress display: a tqdm bar on a terminal, a plain line per epoch otherwise (CI,
    SLURM logs). Only the main process logs; elsewhere every method does nothing."""

    def __init__(self, live_dir: Path, total_epochs: int, resume_step: int | None, enabled: bool):
        self.total_epochs, self.live = total_epochs, None
        self.interactive = sys.stderr.isatty()
        if not enabled:
            return
        from dvclive import Live

        if resume_step is not None:
            _truncate_history(Path(live_dir) / "plots" / "metrics", resume_step)
        self.live = Live(
            dir=str(live_dir), resume=resume_step is not None, save_dvc_exp=False, dvcyaml=None, report=None
        )
        if resume_step is not None:
            self.live.step = resume_step

    def start_epoch(self, epoch: int, batches: int) -> None:
        self.epoch, self.batches = epoch, batches
        self.sums: dict[str, float] = {}
        self.started = time.perf_counter()
        self.bar = None
        self._step_open = False
        if self.live is not None and self.interactive:
            from tqdm import tqdm

            self.bar = tqdm(total=batches, desc=f"epoch {epoch + 1}/{self.total_epochs}", leave=False)

    def _close_step(self, sync: bool) -> None:
        """End the open step. Only the epoch's last step syncs: DVCLive's `next_step` rewrites its
        summary and re-reads every history file (for Studio, even when none is configured), which
        per batch made logging quadratic in the steps (a 60-epoch demo training took 1.10× as long)."""
        if self._step_open:
            assert self.live is not None  # a step is only opened while logging
            if sync:
                self.live.next_step()
            else:
                self.live.step += 1
            self._step_open = False

    def batch(self, logged: dict[str, float], lr: float) -> None:
        if self.live is None:
            return
        # A step stays open until the next batch so the epoch summary lands on the epoch's last step.
        self._close_step(sync=False)
        for key, value in logged.items():
            self.live.log_metric(f"train/{key}", value)
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.live.log_metric("train/lr", lr)
        self._step_open = True
        if self.bar is not None:
            self.bar.update(1)

    def end_epoch(self, images: int, validation: dict[str, float], test: dict[str, float]) -> None:
        if self.live is None:
            return
        means = {key: value / max(self.batches, 1) for key, value in self.sums.items()}
        for key, value in means.items():
            self.live.log_metric(f"epoch/{key}", value)
        self.live.log_metric("epoch/epoch", self.epoch + 1)
        for key, value in validation.items():
            self.live.log_metric(f"val/{key}", value)
        for key, value in test.items():
            self.live.log_metric(f"test/{key}", value)
        self._close_step(sync=True)
        if self.bar is not None:
            self.bar.close()
        seconds = time.perf_counter() - self.started
        figures = " ".join(f"{k}={v:.4f}" for k, v in means.items())
        figures += "".join(f" val_{k}={v:.4f}" for k, v in validation.items())
        figures += "".join(f" test_{k}={v:.4f}" for k, v in test.items())
        print(
            f"epoch {self.epoch + 1}/{self.total_epochs} {figures} ({images / max(seconds, 1e-9):.0f} img/s)",
            file=sys.stderr,
            flush=True,
        )

    def close(self) -> None:
        if self.live is not None:
            self.live.end()

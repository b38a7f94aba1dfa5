"""Command `check`: what runs train with — model, augmentation, loss terms — built from their
registry members and checked against the members' contracts on a probe batch
(ccreid.engine.trainer.check_training). Snakemake runs it before the first job of a run that
trains (workflow/rules/common.smk, `onstart`), so a broken member stops before any job starts.
Writes nothing."""

from __future__ import annotations

import torch

from ccreid.core.schema import RunConfig
from ccreid.core.sections import train_section
from ccreid.engine.trainer import check_training


def check(run_cfgs: list[RunConfig]) -> int:
    """Check each distinct training among `run_cfgs` once; returns how many were checked."""
    torch.set_num_threads(1)  # probes are tiny; the stages set their own thread counts
    checked: list[dict] = []
    for run_cfg in run_cfgs:
        section = train_section(run_cfg)
        if section not in checked:
            check_training(run_cfg)
            checked.append(section)
    return len(checked)

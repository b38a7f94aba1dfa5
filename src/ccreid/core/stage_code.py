"""The code a stage runs for a run, as one hash: the one its fingerprint records, its Snakemake
rule's params hold and its DVC stage depends on (docs/architecture.md, "Code hashes")."""

from __future__ import annotations

from ccreid.core.fingerprint import code_hash

# Training evaluates during training only when a run monitors; the stage then imports this module
# by name, so its code (and the metrics code under it) is part of the train hash of those runs only.
MONITORS = "ccreid.evaluation.validation"


def monitors_on(run_cfg: dict) -> bool:
    return bool(run_cfg["train"]["val_every"] or run_cfg["eval"]["test_every"])


def stage_module(stage: str) -> str:
    return f"ccreid.stages.{stage}"


def stage_code(stage: str, run_cfg: dict | None = None) -> str:
    """Hash of the stage module's import closure; for training, plus the monitors when they run."""
    modules = [stage_module(stage)]
    if stage == "train" and run_cfg is not None and monitors_on(run_cfg):
        modules.append(MONITORS)
    return code_hash(*modules)

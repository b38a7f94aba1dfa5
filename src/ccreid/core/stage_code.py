"""The code a stage runs for a run, as one hash: the one its fingerprint records, its Snakemake
rule's params hold and its DVC stage depends on (docs/architecture.md, "Code hashes").

A stage's own import closure holds no registry member: a member module enters the hash of exactly
the runs whose resolved config selects it (core/registry.py), as the monitors enter only the
training of runs that monitor. So a new gate retrains nothing, and an edit of one gate retrains the
runs that use it and no other.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ccreid.core.fingerprint import code_hash
from ccreid.core.registry import Member, Registry, member_ref, registry

if TYPE_CHECKING:
    from ccreid.core.schema import LossCfg, ModelCfg, PluginFiles, RunConfig

# Training evaluates during training only when a run monitors; the stage then imports this module
# by name, so its code (and the metrics code under it) is part of the train hash of those runs only.
MONITORS = "ccreid.evaluation.validation"


def monitors_on(run_cfg: RunConfig) -> bool:
    return bool(run_cfg.train.val_every or run_cfg.eval.test_every)


def stage_module(stage: str) -> str:
    return f"ccreid.stages.{stage}"


def plugins_registry(plugins: PluginFiles | None) -> Registry:
    """The registry a resolved config was checked against: ccreid's members and params.yaml's
    plugins (a run config's `plugins`)."""
    return registry(plugins.files, plugins.root) if plugins is not None else registry()


def model_members(model_cfg: ModelCfg, registry: Registry) -> list[Member]:
    """The members a model is built from: backbone, pooling, and the multi-scale block and gate."""
    members = [
        registry.member("backbone", member_ref(model_cfg.backbone)[0]),
        registry.member("pooling", member_ref(model_cfg.pooling)[0]),
    ]
    multiscale = model_cfg.multiscale
    if multiscale.enabled:
        members.append(registry.member("block", member_ref(multiscale.block)[0]))
        members.append(registry.member("gate", member_ref(multiscale.gate)[0]))
    return members


def loss_terms(loss_cfg: LossCfg) -> dict[str, dict]:
    """The loss terms a run trains with, each with its section, in the order they add up: every
    section of `loss` that is on (`enabled: true`; the identity loss, without `enabled`, always is)."""
    sections = loss_cfg.model_dump(mode="json")
    return {name: section for name, section in sections.items() if section.get("enabled", True)}


def run_members(stage: str, run_cfg: RunConfig) -> list[Member]:
    """The registry members a run's stage runs (only those enter its code hash)."""
    if stage not in ("train", "extract"):
        return []
    registry = plugins_registry(run_cfg.plugins)
    members = model_members(run_cfg.model, registry)
    if stage == "train":
        members += [registry.member("loss", name) for name in loss_terms(run_cfg.loss)]
        members += [registry.member("augmentation", member_ref(spec)[0]) for spec in run_cfg.augment.extra]
    return members


def prepare_code(layout: str, plugins: PluginFiles | None) -> str:
    """The code hash of preparation: the stage's and its data set's layout's (ccreid's or a plugin's)."""
    return _hash("prepare", [plugins_registry(plugins).member("layout", layout)])


def stage_code(stage: str, run_cfg: RunConfig | None = None) -> str:
    """Hash of the stage module's import closure, plus the members the run selects (train,
    extract: its model's, and training's loss terms and augmentations) and, for training, the
    monitors when they run. Preparation's: prepare_code."""
    members = run_members(stage, run_cfg) if run_cfg is not None else []
    monitors = stage == "train" and run_cfg is not None and monitors_on(run_cfg)
    return _hash(stage, members, monitors)


def _hash(stage: str, members: list[Member], monitors: bool = False) -> str:
    modules = [stage_module(stage)] + ([MONITORS] if monitors else [])
    hashed = [member for member in members if member.hashed]
    files = tuple(sorted({(m.plugin, Path(m.source)) for m in hashed if m.plugin is not None}))
    modules += sorted({m.module for m in hashed if m.plugin is None})
    return code_hash(*modules, files=files)

"""The code a stage runs for a run, as one hash: the one its fingerprint records, its Snakemake
rule's params hold and its DVC stage depends on (docs/architecture.md, "Code hashes").

A stage's own import closure holds no registry member: a member module enters the hash of exactly
the runs whose resolved config selects it (core/registry.py), as the monitors enter only the
training of runs that monitor. So a new gate retrains nothing, and an edit of one gate retrains the
runs that use it and no other.
"""

from __future__ import annotations

from pathlib import Path

from ccreid.core.fingerprint import code_hash
from ccreid.core.registry import Member, Registry, member_ref, registry

# Training evaluates during training only when a run monitors; the stage then imports this module
# by name, so its code (and the metrics code under it) is part of the train hash of those runs only.
MONITORS = "ccreid.evaluation.validation"


def monitors_on(run_cfg: dict) -> bool:
    return bool(run_cfg["train"]["val_every"] or run_cfg["eval"]["test_every"])


def stage_module(stage: str) -> str:
    return f"ccreid.stages.{stage}"


def plugins_registry(cfg: dict) -> Registry:
    """The registry a resolved config was checked against: ccreid's members and its params.yaml's
    plugins (`cfg["plugins"]`: their folder and files, as Params.run_config writes them)."""
    plugins = cfg.get("plugins") or {"root": ".", "files": []}
    return registry(tuple(plugins["files"]), plugins["root"])


def layout_config(layout: str, plugins: dict | None) -> dict:
    """What selects preparation's code: its data set's layout, among ccreid's and the plugins' ones."""
    return {"dataset": {"layout": layout}, "plugins": plugins}


def model_members(model_cfg: dict, registry: Registry) -> list[Member]:
    """The members a model is built from: backbone, pooling, and the multi-scale block and gate."""
    members = [
        registry.member("backbone", member_ref(model_cfg["backbone"])[0]),
        registry.member("pooling", member_ref(model_cfg["pooling"])[0]),
    ]
    multiscale = model_cfg["multiscale"]
    if multiscale["enabled"]:
        members.append(registry.member("block", member_ref(multiscale["block"])[0]))
        members.append(registry.member("gate", member_ref(multiscale["gate"])[0]))
    return members


def loss_terms(loss_cfg: dict) -> list[str]:
    """The loss terms a run trains with, in the order they add up: every section of `loss` that
    is on (`enabled: true`; a section without `enabled`, the identity loss, always is)."""
    return [name for name, section in loss_cfg.items() if section.get("enabled", True)]


def run_members(stage: str, run_cfg: dict) -> list[Member]:
    """The registry members a stage runs for a run (only those enter its code hash)."""
    registry = plugins_registry(run_cfg)
    if stage == "prepare":
        return [registry.member("layout", run_cfg["dataset"]["layout"])]
    if stage not in ("train", "extract"):
        return []
    members = model_members(run_cfg["model"], registry)
    if stage == "train":
        members += [registry.member("loss", name) for name in loss_terms(run_cfg["loss"])]
        members += [registry.member("augmentation", member_ref(spec)[0]) for spec in run_cfg["augment"]["extra"]]
    return members


def stage_code(stage: str, run_cfg: dict | None = None) -> str:
    """Hash of the stage module's import closure, plus the members the run selects (train,
    extract: its model's, and training's loss terms and augmentations; prepare: its layout) and,
    for training, the monitors when they run. `run_cfg`: the resolved run config (for prepare,
    any config with the data set's `dataset` section)."""
    modules = [stage_module(stage)]
    members = run_members(stage, run_cfg) if run_cfg is not None else []
    if stage == "train" and run_cfg is not None and monitors_on(run_cfg):
        modules.append(MONITORS)
    hashed = [member for member in members if member.hashed]
    files = tuple(sorted({(m.plugin, Path(m.source)) for m in hashed if m.plugin is not None}))
    modules += sorted({m.module for m in hashed if m.plugin is None})
    return code_hash(*modules, files=files)

"""Stage `weights`: ImageNet weights into data/weights/<published name> (ccreid.core.weights),
fetched where the orchestrator runs (a Snakemake localrule), their digest checked; for a run,
also a record of the file its training starts from (DVC's train stage depends on it)."""

from __future__ import annotations

from pathlib import Path

from ccreid.core.atomic import atomic_write_json
from ccreid.core.schema import ModelCfg
from ccreid.core.weights import fetch_weights, pretrained_file, sha256


def backbone_weights(backbone: str) -> Path:
    return fetch_weights(backbone)


def run_weights(model_cfg: ModelCfg, record: Path | None = None) -> Path | None:
    """Fetch (or check) what a run's training reads; with `record`, write its file and digest."""
    entry = {"pretrained": model_cfg.pretrained}
    if model_cfg.pretrained == "imagenet":
        fetch_weights(model_cfg.backbone_name)
    path = pretrained_file(model_cfg)
    if path is not None:
        entry |= {"file": str(path), "sha256": sha256(path)}
    if record is not None:
        atomic_write_json(Path(record), entry)
    return path

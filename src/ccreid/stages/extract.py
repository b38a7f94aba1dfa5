"""Stage `extract`: embeddings of every evaluation split of a prepared data set into
``features.h5`` (ccreid.evaluation.features), with the trained model; averaged with the
horizontally flipped image when eval.flip, precision eval.amp."""

from __future__ import annotations

from pathlib import Path

import torch

from ccreid.core import fingerprint
from ccreid.core.atomic import exclusive
from ccreid.core.devices import pick_device
from ccreid.core.paths import FOLDER_RECORD
from ccreid.core.schema import RunConfig
from ccreid.core.sections import EXTRACT_KEYS, eval_section
from ccreid.core.stage_code import plugins_registry, stage_code
from ccreid.data.prepared import load_prepared
from ccreid.evaluation.embedding import embed_splits
from ccreid.evaluation.features import write_features
from ccreid.models.checkpoint import load_model


def extract(
    prepared_dir: Path, model_path: Path, run_cfg: RunConfig, out_path: Path, device: str | None = None
) -> Path:
    """Embed the evaluation splits with the run's trained model (its members from the run's registry)."""
    prepared_dir, model_path, out_path = Path(prepared_dir), Path(model_path), Path(out_path)
    eval_cfg = run_cfg.eval
    config = eval_section(eval_cfg, EXTRACT_KEYS)
    expected = fingerprint.make_fingerprint(
        __name__,
        stage_code("extract", run_cfg),
        config,
        {"prepared": prepared_dir / FOLDER_RECORD, "model": model_path},
    )
    with exclusive(out_path):
        if fingerprint.is_fresh(out_path, expected):
            return out_path
        data = load_prepared(prepared_dir)
        torch_device = pick_device(device)
        torch.set_num_threads(eval_cfg.cpu_threads)
        model = load_model(model_path, torch_device, plugins_registry(run_cfg.plugins), run_cfg.experiment)
        splits = embed_splits(model, data, eval_cfg, torch_device)
        with fingerprint.rebuilding(out_path, expected):
            write_features(out_path, data.protocols, splits)
    return out_path

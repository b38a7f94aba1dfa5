"""Shared set-up of the benchmarks: a synthetic PRCC-layout data set, generated and prepared."""

from __future__ import annotations

import os
from pathlib import Path

from ccreid.core.config import DatasetCfg, load_params
from ccreid.data.prepared import load_prepared
from ccreid.stages.prepare import prepare
from ccreid.stages.synth import synthesize

REPO = Path(__file__).resolve().parents[1]


def cores() -> int:
    return len(os.sched_getaffinity(0))


def recipe(exp: str = "212") -> dict:
    """An experiment's resolved recipe from the repository's params.yaml (no data-set overrides)."""
    return load_params(REPO / "params.yaml").resolve(exp)


def synthetic_set(root: Path, height: int, width: int, train_ids: int, images_per_camera: int):
    """JPEGs drawn at height×width under root/raw, prepared (uint8 HDF5) under root/prepared.
    Returns the prepared data set (ccreid.data.prepared.PreparedData)."""
    raw = Path(root) / "raw"
    synthesize(
        raw,
        {
            "seed": 0,
            "train_ids": train_ids,
            "val_ids": 1,
            "test_ids": 2,
            "images_per_camera": images_per_camera,
            "height": height,
            "width": width,
            "jpeg_quality": 90,
            "palette_size": 12,
        },
    )
    prepared = Path(root) / "prepared"
    prepare("benchmark", DatasetCfg(layout="prcc", root=str(raw), size=(height, width)), prepared)
    return load_prepared(prepared)

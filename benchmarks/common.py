"""Shared set-up of the benchmarks: a synthetic PRCC-layout data set, generated and prepared,
and the tests' helpers."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

from ccreid.core.config import load_params
from ccreid.core.schema import DatasetCfg, RecipeCfg, RunConfig, SynthCfg, deep_merge
from ccreid.data.prepared import load_prepared
from ccreid.stages.prepare import prepare
from ccreid.stages.synth import synthesize

REPO = Path(__file__).resolve().parents[1]


def test_helpers() -> ModuleType:
    """tests/helpers.py (the tests' reference loop, tiny project and null simulation), loaded from
    its file, so a benchmark times or reuses exactly what the tests check, without putting tests/
    on the import path."""
    spec = importlib.util.spec_from_file_location("helpers", REPO / "tests" / "helpers.py")
    assert spec is not None and spec.loader is not None
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    return helpers


def cores() -> int:
    return len(os.sched_getaffinity(0))


def recipe(exp: str = "212") -> RecipeCfg:
    """An experiment's resolved recipe from the repository's params.yaml (no data-set overrides)."""
    return load_params(REPO / "params.yaml").resolve(exp)


def run_config(exp: str, name: str, size: tuple[int, int], overrides: dict | None = None) -> RunConfig:
    """What one run of `exp` reads on a benchmark's own PRCC-layout data set `name` of images of
    `size`: its recipe as `recipe` gives it (no data set's overrides, no schedule scale) with
    `overrides` deep-merged, validated as params.yaml's runs are."""
    params = load_params(REPO / "params.yaml")
    values = deep_merge(params.resolve(exp).model_dump(mode="json"), overrides or {})
    dataset = DatasetCfg(layout="prcc", root="", size=size).model_dump(
        mode="json", exclude={"synth", "obtain", "overrides", "seeds"}
    )
    values |= {
        "dataset": {"name": name, **dataset},
        "experiment": exp,
        "plugins": params.plugins.model_dump(mode="json"),
    }
    return RunConfig.model_validate(values)


def synthetic_set(root: Path, height: int, width: int, train_ids: int, images_per_camera: int):
    """JPEGs drawn at height×width under root/raw, prepared (uint8 HDF5) under root/prepared.
    Returns the prepared data set (ccreid.data.prepared.PreparedData)."""
    raw = Path(root) / "raw"
    synth = SynthCfg(
        seed=0,
        train_ids=train_ids,
        val_ids=1,
        test_ids=2,
        images_per_camera=images_per_camera,
        height=height,
        width=width,
        jpeg_quality=90,
        palette_size=12,
    )
    synthesize(raw, synth)
    prepared = Path(root) / "prepared"
    prepare("benchmark", DatasetCfg(layout="prcc", root=str(raw), size=(height, width)), prepared)
    return load_prepared(prepared)

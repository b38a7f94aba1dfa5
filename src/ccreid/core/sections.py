"""Which part of a resolved run config each stage reads: what its fingerprint records, its
Snakemake rule's params hold and its DVC config file holds. Kept apart from the params schema
(ccreid.core.config), so editing the schema's code rebuilds nothing by itself."""

from __future__ import annotations

import json
from typing import Any


def canonical_json(value: Any) -> str:
    """Sorted-key JSON: the same content always gives the same text (and hash)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# data set keys that change the prepared store (its raw data is an input of its own); the others
# (overrides, schedule_scale, obtain, synth) are read by later stages or by none.
PREPARE_KEYS = ("layout", "size", "on_bad_image")


def prepare_section(dataset_cfg: dict) -> dict:
    """What preparation reads of a data set's config (as JSON: DatasetCfg.model_dump(mode="json"))."""
    return {key: dataset_cfg[key] for key in PREPARE_KEYS}


TRAIN_SECTIONS = ("model", "loss", "train", "augment")
EXTRACT_KEYS = ("flip", "batch_size", "amp", "memory_format", "cpu_threads")  # eval keys that change the features
EVAL_KEYS = ("distance", "rerank", "single_shot")  # eval keys that change only the metrics
# eval keys training reads when eval.test_every evaluates the test protocols during training (scored
# as evaluation scores them: ccreid.evaluation.scoring).
TEST_DURING_TRAINING_KEYS = ("test_every", "distance", "rerank", "flip", "batch_size", "amp", "memory_format")


# train keys that change how training runs but never the trained weights.
TRAIN_RUNTIME_KEYS = ("memory_budget_gb", "val_every")


def train_section(run_cfg: dict) -> dict:
    """What training reads. The data itself is identified by the prepared folder's fingerprint,
    so two experiments with equal sections share one trained model. Runtime keys are left out:
    changing them neither retrains a model nor invalidates a checkpoint. The evaluation keys
    count only while eval.test_every is on (training then also writes the test curve)."""
    section = {key: run_cfg[key] for key in TRAIN_SECTIONS} | {"size": run_cfg["dataset"]["size"]}
    section["train"] = {k: v for k, v in section["train"].items() if k not in TRAIN_RUNTIME_KEYS}
    if run_cfg["eval"]["test_every"]:
        section["eval"] = {key: run_cfg["eval"][key] for key in TEST_DURING_TRAINING_KEYS}
    return section

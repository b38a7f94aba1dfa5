"""Which part of a resolved run config each stage reads, as plain JSON values: what its
fingerprint records, its Snakemake rule's params hold and its DVC config file holds."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ccreid.core.schema import DatasetCfg, EvalCfg, RunConfig


def canonical_json(value: Any) -> str:
    """Sorted-key JSON: the same content always gives the same text (and hash)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# data set keys that change the prepared store (its raw data is an input of its own); the others
# (overrides, schedule_scale, obtain, synth) are read by later stages or by none.
PREPARE_KEYS = ("layout", "size", "on_bad_image")


def prepare_section(dataset: DatasetCfg) -> dict:
    """What preparation reads of a data set's config."""
    return dataset.model_dump(mode="json", include=set(PREPARE_KEYS))


TRAIN_SECTIONS = ("model", "loss", "train", "augment")
EXTRACT_KEYS = ("flip", "batch_size", "amp", "memory_format", "cpu_threads")  # eval keys that change the features
EVAL_KEYS = ("distance", "rerank", "single_shot")  # eval keys that change only the metrics
# eval keys training reads when eval.test_every evaluates the test protocols during training (scored
# as evaluation scores them: ccreid.evaluation.scoring).
TEST_DURING_TRAINING_KEYS = ("test_every", "distance", "rerank", "flip", "batch_size", "amp", "memory_format")


# train keys that change how training runs but never the trained weights.
TRAIN_RUNTIME_KEYS = ("memory_budget_gb", "val_every")


def eval_section(eval_cfg: EvalCfg, keys: tuple[str, ...]) -> dict:
    """The eval keys a stage reads (EXTRACT_KEYS, EVAL_KEYS)."""
    return eval_cfg.model_dump(mode="json", include=set(keys))


def train_section(run_cfg: RunConfig) -> dict:
    """What training reads. The data itself is identified by the prepared folder's fingerprint,
    so two experiments with equal sections share one trained model. Runtime keys are left out:
    changing them neither retrains a model nor invalidates a checkpoint. The evaluation keys
    count only while eval.test_every is on (training then also writes the test curve)."""
    section = run_cfg.model_dump(mode="json", include=set(TRAIN_SECTIONS))
    section["size"] = list(run_cfg.dataset.size)
    section["train"] = {k: v for k, v in section["train"].items() if k not in TRAIN_RUNTIME_KEYS}
    if run_cfg.eval.test_every:
        section["eval"] = eval_section(run_cfg.eval, TEST_DURING_TRAINING_KEYS)
    return section

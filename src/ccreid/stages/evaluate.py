"""Stage `evaluate`: every protocol of the data set, from ``features.h5`` to ``metrics.json``.

metrics.json holds one object per protocol: mAP, mINP, R1/R5/R10/R20 (fractions), queries
(evaluated) and skipped (no valid match). Single-shot protocols (one random gallery image per
identity, several seeded draws) report the mean and, as ``<metric>_std``, the spread. Per-query
AP and first-match rank of each multi-shot protocol go to ``per_query.csv`` beside it, for
statistics across experiments, and its CMC curve to ``cmc.csv``. The scoring itself is
ccreid.evaluation.scoring.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ccreid.core import fingerprint
from ccreid.core.atomic import atomic_path, atomic_write_json, exclusive
from ccreid.core.devices import pick_device
from ccreid.core.paths import CMC, PER_QUERY
from ccreid.core.schema import EvalCfg
from ccreid.core.sections import EVAL_KEYS, eval_section
from ccreid.core.stage_code import stage_code
from ccreid.evaluation.features import read_features
from ccreid.evaluation.scoring import RANKS, protocol_metrics


def evaluate(features_path: Path, eval_cfg: EvalCfg, out_path: Path, device: str | None = None) -> dict:
    features_path, out_path = Path(features_path), Path(out_path)
    config = eval_section(eval_cfg, EVAL_KEYS)
    expected = fingerprint.make_fingerprint(__name__, stage_code("evaluate"), config, {"features": features_path})
    with exclusive(out_path, companions=(out_path.with_name(PER_QUERY), out_path.with_name(CMC))):
        if fingerprint.is_fresh(out_path, expected):
            return json.loads(out_path.read_text())
        splits, protocols = read_features(features_path)
        metrics, per_query, cmc_curves = protocol_metrics(splits, protocols, eval_cfg, pick_device(device))
        with fingerprint.rebuilding(out_path, expected):
            with atomic_path(out_path.with_name(PER_QUERY)) as tmp:
                pd.concat(per_query).to_csv(tmp, index=False, float_format="%.8g")
            with atomic_path(out_path.with_name(CMC)) as tmp:  # the curve `dvc plots show` draws
                curves = pd.DataFrame({"rank": np.arange(1, max(RANKS) + 1), **cmc_curves})
                curves.to_csv(tmp, index=False, float_format="%.8g")
            atomic_write_json(out_path, metrics)
    return metrics

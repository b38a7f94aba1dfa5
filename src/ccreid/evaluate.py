"""Stage `evaluate`: every protocol of the data set, from ``features.h5`` to ``metrics.json``.

metrics.json holds one object per protocol: mAP, mINP, R1/R5/R10/R20 (fractions), queries
(evaluated) and skipped (no valid match). Single-shot protocols (one random gallery image per
identity, several seeded draws) report the mean and, as ``<metric>_std``, the spread. Per-query
AP and first-match rank of each multi-shot protocol go to ``per_query.csv`` beside it, for
statistics across experiments, and its CMC curve to ``cmc.csv``.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch

from ccreid import fingerprint
from ccreid.atomic import atomic_path, atomic_write_json, exclusive
from ccreid.config import EVAL_KEYS
from ccreid.datasets import Protocol
from ccreid.errors import CCReIDError
from ccreid.metrics import distances, query_ranks, summarize
from ccreid.rerank import k_reciprocal_rerank
from ccreid.devices import pick_device

RANKS = (1, 5, 10, 20)
PER_QUERY = "per_query.csv"
CMC = "cmc.csv"


def read_features(path: Path) -> tuple[dict[str, dict], list[Protocol]]:
    """All splits of a features.h5, checked; a foreign or truncated file is one clear error."""
    try:
        with h5py.File(path, "r") as store:
            protocols = [Protocol(**{**p, "cameras": tuple(p["cameras"]) if p["cameras"] else None})
                         for p in json.loads(store.attrs["protocols"])]
            splits = {}
            for name in store:
                group = store[name]
                splits[name] = {key: group[key][()] for key in ("feats", "pids", "camids", "clothes")}
                splits[name]["paths"] = group["paths"].asstr()[()]
    except (OSError, KeyError, ValueError, TypeError) as error:
        raise CCReIDError(
            f"{path}: not a complete ccreid features file ({type(error).__name__}: {error}); "
            "delete it and re-run `ccreid extract`"
        ) from None
    for protocol in protocols:
        for split in (protocol.query, protocol.gallery):
            if split not in splits:
                raise CCReIDError(f"{path}: split {split!r} of protocol {protocol.name!r} is missing; re-run `ccreid extract`")
            if len(splits[split]["feats"]) == 0:
                raise CCReIDError(f"{path}: split {split!r} is empty; protocol {protocol.name!r} cannot be evaluated")
    return splits, protocols


def _subset(split: dict, keep: np.ndarray) -> dict:
    return {key: value[keep] for key, value in split.items()}


def _to_device(split: dict, device) -> dict:
    return {key: torch.as_tensor(split[key], device=device) for key in ("feats", "pids", "camids", "clothes")}


def _ranks(query: dict, gallery: dict, protocol: Protocol, eval_cfg: dict):
    if eval_cfg["rerank"]:
        dist = k_reciprocal_rerank(query["feats"], gallery["feats"])
    else:
        dist = distances(query["feats"], gallery["feats"], eval_cfg["distance"])
    return query_ranks(dist, query["pids"], gallery["pids"], query["camids"], gallery["camids"],
                       query["clothes"], gallery["clothes"], mode=protocol.mode)


def _headline(ap, first, inp) -> tuple[dict, np.ndarray]:
    """The metrics.json entry of one evaluation and its CMC curve (ranks 1..20)."""
    summary = summarize(ap, first, inp, max(RANKS))
    cmc = summary.pop("cmc")
    return summary | {f"R{r}": float(cmc[r - 1]) for r in RANKS}, cmc


def _single_shot_draw(gallery: dict, rng: np.random.Generator) -> np.ndarray:
    """Row indices of one random gallery image per identity."""
    pids = gallery["pids"]
    return np.array(sorted(rng.choice(np.flatnonzero(pids == pid)) for pid in np.unique(pids)))


def evaluate(features_path: Path, eval_cfg: dict, out_path: Path, device: str | None = None) -> dict:
    features_path, out_path = Path(features_path), Path(out_path)
    config = {key: eval_cfg[key] for key in EVAL_KEYS}
    expected = fingerprint.make_fingerprint(__name__, config, {"features": features_path})
    with exclusive(out_path, companions=(out_path.with_name(PER_QUERY), out_path.with_name(CMC))):
        if fingerprint.is_fresh(out_path, expected):
            return json.loads(out_path.read_text())
        metrics, per_query, cmc_curves = _protocol_metrics(features_path, eval_cfg, device)
        with fingerprint.rebuilding(out_path, expected):
            with atomic_path(out_path.with_name(PER_QUERY)) as tmp:
                pd.concat(per_query).to_csv(tmp, index=False, float_format="%.8g")
            with atomic_path(out_path.with_name(CMC)) as tmp:  # the curve `dvc plots show` draws
                curves = pd.DataFrame({"rank": np.arange(1, max(RANKS) + 1), **cmc_curves})
                curves.to_csv(tmp, index=False, float_format="%.8g")
            atomic_write_json(out_path, metrics)
    return metrics


def _protocol_metrics(features_path: Path, eval_cfg: dict, device: str | None) -> tuple[dict, list, dict]:
    """Headline metrics per protocol, per-query tables and CMC curves."""
    splits, protocols = read_features(features_path)
    torch_device = pick_device(device)
    metrics, per_query, cmc_curves = {}, [], {}
    for protocol in protocols:
        if protocol.single_shot and not eval_cfg["single_shot"]:
            continue
        query, gallery = splits[protocol.query], splits[protocol.gallery]
        if protocol.cameras:
            query = _subset(query, np.isin(query["camids"], protocol.cameras))
            gallery = _subset(gallery, np.isin(gallery["camids"], protocol.cameras))
        query_t = _to_device(query, torch_device)
        if not protocol.single_shot:
            ap, first, inp, _ = _ranks(query_t, _to_device(gallery, torch_device), protocol, eval_cfg)
            metrics[protocol.name], cmc_curves[protocol.name] = _headline(ap, first, inp)
            per_query.append(pd.DataFrame({
                "protocol": protocol.name, "path": query["paths"], "pid": query["pids"],
                "ap": ap.cpu().numpy(), "first_rank": first.cpu().numpy(),
            }))
            continue
        trials = []
        for trial in range(protocol.trials):
            keep = _single_shot_draw(gallery, np.random.default_rng(trial))
            ap, first, inp, _ = _ranks(query_t, _to_device(_subset(gallery, keep), torch_device),
                                       protocol, eval_cfg)
            trials.append(_headline(ap, first, inp)[0])
        table = pd.DataFrame(trials)
        metrics[protocol.name] = (
            {key: float(table[key].mean()) for key in table}
            | {f"{key}_std": float(table[key].std(ddof=0)) for key in ("mAP", "mINP") + tuple(f"R{r}" for r in RANKS)}
            | {"trials": protocol.trials}
        )
    return metrics, per_query, cmc_curves

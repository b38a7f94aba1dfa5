"""Every protocol of a data set scored from its features: one metrics.json entry per protocol
(mAP, mINP, R1/R5/R10/R20 as fractions, queries, skipped), per-query AP and first-match rank,
and CMC curves. Single-shot protocols (one random gallery image per identity, several seeded
draws) give the mean and, as ``<metric>_std``, the spread over draws."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ccreid.data.layouts.base import Protocol
from ccreid.evaluation.metrics import distances, query_ranks, summarize
from ccreid.evaluation.rerank import k_reciprocal_rerank

RANKS = (1, 5, 10, 20)


def _subset(split: dict, keep: np.ndarray) -> dict:
    return {key: value[keep] for key, value in split.items()}


def _to_device(split: dict, device) -> dict:
    return {key: torch.as_tensor(split[key], device=device) for key in ("feats", "pids", "camids", "clothes")}


def _ranks(query: dict, gallery: dict, protocol: Protocol, eval_cfg: dict):
    if eval_cfg["rerank"]:
        dist = k_reciprocal_rerank(query["feats"], gallery["feats"])
    else:
        dist = distances(query["feats"], gallery["feats"], eval_cfg["distance"])
    return query_ranks(
        dist,
        query["pids"],
        gallery["pids"],
        query["camids"],
        gallery["camids"],
        query["clothes"],
        gallery["clothes"],
        mode=protocol.mode,
    )


def _headline(ap, first, inp) -> tuple[dict, np.ndarray]:
    """The metrics.json entry of one evaluation and its CMC curve (ranks 1..20)."""
    summary = summarize(ap, first, inp, max(RANKS))
    cmc = summary.pop("cmc")
    return summary | {f"R{r}": float(cmc[r - 1]) for r in RANKS}, cmc


def _single_shot_draw(gallery: dict, rng: np.random.Generator) -> np.ndarray:
    """Row indices of one random gallery image per identity."""
    pids = gallery["pids"]
    return np.array(sorted(rng.choice(np.flatnonzero(pids == pid)) for pid in np.unique(pids)))


def protocol_metrics(
    splits: dict[str, dict], protocols: list[Protocol], eval_cfg: dict, torch_device: torch.device
) -> tuple[dict, list, dict]:
    """Headline metrics per protocol, per-query tables and CMC curves."""
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
            per_query.append(
                pd.DataFrame(
                    {
                        "protocol": protocol.name,
                        "path": query["paths"],
                        "pid": query["pids"],
                        "ap": ap.cpu().numpy(),
                        "first_rank": first.cpu().numpy(),
                    }
                )
            )
            continue
        trials = []
        for trial in range(protocol.trials):
            keep = _single_shot_draw(gallery, np.random.default_rng(trial))
            ap, first, inp, _ = _ranks(query_t, _to_device(_subset(gallery, keep), torch_device), protocol, eval_cfg)
            trials.append(_headline(ap, first, inp)[0])
        table = pd.DataFrame(trials)
        metrics[protocol.name] = (
            {key: float(table[key].mean()) for key in table}
            | {f"{key}_std": float(table[key].std(ddof=0)) for key in ("mAP", "mINP") + tuple(f"R{r}" for r in RANKS)}
            | {"trials": protocol.trials}
        )
    return metrics, per_query, cmc_curves

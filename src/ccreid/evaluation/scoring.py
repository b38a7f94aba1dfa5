"""Scoring a protocol, defined once: what evaluation writes to metrics.json, what the monitors log
during training (evaluation/validation.py) and what the ranked lists draw (reporting/ranked_lists.py)
all go through these functions.

A split is a dict of arrays, one row per image: `feats`, `pids`, `camids`, `clothes` (and
`paths`). Scoring a protocol: restrict both splits to its cameras (VC-Clothes), the query ×
gallery distances (`eval.distance`, or k-reciprocal re-ranking with `eval.rerank`), the
protocol's good and junk items of each query (ccreid.evaluation.metrics), and every query's AP,
first-match rank and INP.

metrics.json holds one entry per protocol (mAP, mINP, R1/R5/R10/R20 as fractions, queries,
skipped), per_query.csv each query's AP and first-match rank, cmc.csv the CMC curves. Single-shot
protocols (one random gallery image per identity, several seeded draws) give the mean and, as
``<metric>_std``, the spread over draws.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ccreid.core.schema import EvalCfg
from ccreid.data.layouts.base import Protocol
from ccreid.evaluation.metrics import distances, is_good, query_ranks, summarize
from ccreid.evaluation.rerank import k_reciprocal_rerank

RANKS = (1, 5, 10, 20)
LABELS = ("pids", "camids", "clothes")


def subset(split: dict, keep: np.ndarray) -> dict:
    return {key: value[keep] for key, value in split.items()}


def restrict(split: dict, protocol: Protocol) -> dict:
    """The split's images the protocol keeps: those of its cameras when it names some."""
    if not protocol.cameras:
        return split
    return subset({key: np.asarray(value) for key, value in split.items()}, np.isin(split["camids"], protocol.cameras))


def protocol_distances(
    query_feats: torch.Tensor, gallery_feats: torch.Tensor, eval_cfg: EvalCfg, rows: torch.Tensor | None = None
) -> torch.Tensor:
    """Query × gallery distances as evaluation ranks by them: re-ranked (eval.rerank) or
    eval.distance; of the queries `rows` only, when given (re-ranking still sees every query)."""
    if eval_cfg.rerank:
        dist = k_reciprocal_rerank(query_feats, gallery_feats)
        return dist if rows is None else dist[rows]
    return distances(query_feats if rows is None else query_feats[rows], gallery_feats, eval_cfg.distance)


def on_device(split: dict, device) -> dict[str, torch.Tensor]:
    """The split's features and labels as tensors (a read-only array, as pandas may hand out, copied:
    torch does not share memory it may not write)."""
    return {key: torch.as_tensor(np.require(split[key], requirements="W"), device=device) for key in ("feats", *LABELS)}


def score(query: dict, gallery: dict, mode: str, eval_cfg: EvalCfg, device) -> tuple[torch.Tensor, ...]:
    """Per-query AP, first-match rank, INP and number of true matches of restricted splits."""
    q, g = on_device(query, device), on_device(gallery, device)
    dist = protocol_distances(q["feats"], g["feats"], eval_cfg)
    return query_ranks(dist, q["pids"], g["pids"], q["camids"], g["camids"], q["clothes"], g["clothes"], mode=mode)


def good_and_junk(query: dict, gallery: dict, mode: str, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """len(rows) × gallery masks: each query's true matches, and its junk (same identity, not a
    true match: left out of its ranking)."""
    q = {key: torch.as_tensor(np.asarray(query[key])[rows]) for key in LABELS}
    g = {key: torch.as_tensor(np.asarray(gallery[key]))[None, :] for key in LABELS}
    same_pid = q["pids"][:, None] == g["pids"]
    good = is_good(mode, same_pid, q["camids"], g["camids"], q["clothes"], g["clothes"])
    return good.numpy(), (same_pid & ~good).numpy()


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
    splits: dict[str, dict], protocols: list[Protocol], eval_cfg: EvalCfg, torch_device: torch.device
) -> tuple[dict, list, dict]:
    """Headline metrics per protocol, per-query tables and CMC curves."""
    metrics, per_query, cmc_curves = {}, [], {}
    for protocol in protocols:
        if protocol.single_shot and not eval_cfg.single_shot:
            continue
        query, gallery = restrict(splits[protocol.query], protocol), restrict(splits[protocol.gallery], protocol)
        if not protocol.single_shot:
            ap, first, inp, _ = score(query, gallery, protocol.mode, eval_cfg, torch_device)
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
            ap, first, inp, _ = score(query, subset(gallery, keep), protocol.mode, eval_cfg, torch_device)
            trials.append(_headline(ap, first, inp)[0])
        table = pd.DataFrame(trials)
        metrics[protocol.name] = (
            {key: float(table[key].mean()) for key in table}
            | {f"{key}_std": float(table[key].std(ddof=0)) for key in ("mAP", "mINP") + tuple(f"R{r}" for r in RANKS)}
            | {"trials": protocol.trials}
        )
    return metrics, per_query, cmc_curves

"""Checks on a parsed data set, and a summary of it (what `ccreid prepare --check` prints).

`validate` raises CCReIDError for a copy that cannot be evaluated (an empty split, identities
shared between training and evaluation) and counts what is only worth a warning: queries with no
valid match in their protocol's gallery, which the metrics exclude.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ccreid.core.errors import CCReIDError
from ccreid.data.layouts.base import SAMPLE_COLUMNS, ParsedDataset, Protocol

MODES = ("standard", "cc", "sc")
SUMMARY_FIELDS = ("ids", "images", "cameras", "outfits")
UNANSWERABLE = "unanswerable_queries"
EXAMPLES = 3


def protocol_samples(samples: pd.DataFrame, protocol: Protocol) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Query and gallery rows of `protocol`, restricted to its cameras when it names some."""
    query = samples[samples["split"] == protocol.query]
    gallery = samples[samples["split"] == protocol.gallery]
    if protocol.cameras is not None:
        query = query[query["camid"].isin(protocol.cameras)]
        gallery = gallery[gallery["camid"].isin(protocol.cameras)]
    return query, gallery


def _gallery_counts(gallery: pd.DataFrame, query: pd.DataFrame, keys: list[str]) -> np.ndarray:
    """For each query row, how many gallery rows share its values of `keys`."""
    counts = gallery.groupby(keys).size()
    if len(keys) == 1:
        index = pd.Index(query[keys[0]])
    else:
        index = pd.MultiIndex.from_frame(query[keys])
    return counts.reindex(index, fill_value=0).to_numpy()


def valid_match_counts(query: pd.DataFrame, gallery: pd.DataFrame, mode: str) -> np.ndarray:
    """Number of good gallery matches per query under `mode` (by inclusion-exclusion).

    standard: same pid, other camera. cc: same pid, other camera, other clothes.
    sc: same pid, other camera, same clothes.
    """
    pid = _gallery_counts(gallery, query, ["pid"])
    pid_cam = _gallery_counts(gallery, query, ["pid", "camid"])
    pid_clothes = _gallery_counts(gallery, query, ["pid", "clothes"])
    pid_cam_clothes = _gallery_counts(gallery, query, ["pid", "camid", "clothes"])
    if mode == "standard":
        return pid - pid_cam
    if mode == "cc":
        return pid - pid_cam - pid_clothes + pid_cam_clothes
    return pid_clothes - pid_cam_clothes


def _examples(samples: pd.DataFrame, pids: list[int]) -> str:
    rows = samples[samples["pid"].isin(pids)].drop_duplicates("pid")
    return ", ".join(rows["path"].head(EXAMPLES))


def _check_protocol(samples: pd.DataFrame, protocol: Protocol, dataset: str) -> None:
    if protocol.mode not in MODES:
        raise CCReIDError(
            f"{dataset}: protocol {protocol.name!r} has mode {protocol.mode!r}; expected one of {', '.join(MODES)}."
        )
    for split in (protocol.query, protocol.gallery):
        if not (samples["split"] == split).any():
            raise CCReIDError(
                f"{dataset}: split {split!r} (used by protocol {protocol.name!r}) has no images. "
                "Check that the data set's root holds a complete copy (see docs/datasets.md)."
            )
    query, gallery = protocol_samples(samples, protocol)
    if query.empty or gallery.empty:
        role, split = ("query", protocol.query) if query.empty else ("gallery", protocol.gallery)
        raise CCReIDError(
            f"{dataset}: protocol {protocol.name!r} keeps cameras {protocol.cameras}, but its "
            f"{role} split {split!r} has no image from those cameras. Check the file names' "
            "camera field."
        )


def _check_disjoint(samples: pd.DataFrame, eval_splits: list[str], dataset: str) -> None:
    train = samples[samples["split"] == "train"]
    evaluation = samples[samples["split"].isin(eval_splits)]
    shared = sorted(set(train["pid"]) & set(evaluation["pid"]))
    if shared:
        raise CCReIDError(
            f"{dataset}: {len(shared)} identity(ies) appear both in train and in the evaluation "
            f"splits ({', '.join(eval_splits)}), "
            f"e.g. ids {', '.join(map(str, shared[:EXAMPLES]))}; "
            f"train files: {_examples(train, shared[:EXAMPLES])}; "
            f"evaluation files: {_examples(evaluation, shared[:EXAMPLES])}. "
            "Training and test identities must be disjoint: is the root an unmodified copy?"
        )


def _split_summary(rows: pd.DataFrame) -> dict[str, int]:
    return {
        "ids": int(rows["pid"].nunique()),
        "images": int(len(rows)),
        "cameras": int(rows["camid"].nunique()),
        "outfits": int(rows["clothes"].nunique()),
    }


def validate(parsed: ParsedDataset, dataset: str) -> dict:
    """Check a parsed data set; return {split: {ids, images, cameras, outfits}, ...,
    "unanswerable_queries": {protocol: number of queries without a valid match}}."""
    samples = parsed.samples
    missing = [c for c in SAMPLE_COLUMNS if c not in samples.columns]
    if missing:
        raise CCReIDError(f"{dataset}: the samples table lacks columns {', '.join(missing)}.")
    if not (samples["split"] == "train").any():
        raise CCReIDError(
            f"{dataset}: no training images (split 'train' is empty). Check that the data set's "
            "root holds a complete copy (see docs/datasets.md)."
        )
    eval_splits: list[str] = []
    for protocol in parsed.protocols:
        _check_protocol(samples, protocol, dataset)
        eval_splits += [s for s in (protocol.query, protocol.gallery) if s not in eval_splits]
    _check_disjoint(samples, eval_splits, dataset)

    by_split = samples.groupby("split", sort=False)
    summary: dict = {split: _split_summary(rows) for split, rows in by_split}
    summary[UNANSWERABLE] = {}
    for protocol in parsed.protocols:
        query, gallery = protocol_samples(samples, protocol)
        matches = valid_match_counts(query, gallery, protocol.mode)
        summary[UNANSWERABLE][protocol.name] = int((matches == 0).sum())
    return summary


def format_summary(summary: dict) -> str:
    """The summary as an aligned text table, then a line on unanswerable queries if any."""
    splits = [name for name in summary if name != UNANSWERABLE]
    header = ("split", *SUMMARY_FIELDS)
    table = [header] + [(s, *(str(summary[s][f]) for f in SUMMARY_FIELDS)) for s in splits]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join([row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]) for row in table]
    unanswerable = {k: v for k, v in summary.get(UNANSWERABLE, {}).items() if v}
    if unanswerable:
        counts = ", ".join(f"{name} {n}" for name, n in unanswerable.items())
        lines.append(f"queries without a valid match (excluded from metrics): {counts}")
    return "\n".join(lines)

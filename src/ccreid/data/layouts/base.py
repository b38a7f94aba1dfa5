"""What every data-set parser returns: a samples table and the evaluation protocols."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

import pandas as pd

# Columns every parser fills, one row per image. `path` is relative to the data set's raw root
# (posix separators); `clothes` is the data set's own clothes key as a string; `split` names the
# folder role ("train", "val", "gallery", "query", "query_cc", ...).
SAMPLE_COLUMNS = ("path", "pid", "camid", "clothes", "split")


@dataclass(frozen=True)
class Protocol:
    """One evaluation: queries of split `query` against gallery split `gallery` under `mode`.

    mode: "standard" (junk = same pid and same camera), "cc" (clothes-changing) or "sc"
    (same-clothes), as ccreid.evaluation.metrics.rank_metrics defines them. `cameras`, when set, keeps only
    query and gallery images from those cameras (VC-Clothes). `single_shot` draws one gallery
    image per identity, `trials` times (PRCC's original protocol).
    """

    name: str
    query: str
    gallery: str
    mode: str = "standard"
    cameras: tuple[int, ...] | None = None
    single_shot: bool = False
    trials: int = 10


def protocols_to_json(protocols: list[Protocol], indent: int | None = None) -> str:
    """The protocols as stored in protocols.json and in features.h5's attributes."""
    return json.dumps([dataclasses.asdict(p) for p in protocols], indent=indent)


def protocols_from_json(text: str) -> list[Protocol]:
    """Inverse of protocols_to_json; raises KeyError/TypeError/ValueError on a foreign text."""
    return [Protocol(**{**p, "cameras": tuple(p["cameras"]) if p["cameras"] else None}) for p in json.loads(text)]


@dataclass
class ParsedDataset:
    samples: pd.DataFrame
    protocols: list[Protocol] = field(default_factory=list)

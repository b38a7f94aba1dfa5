"""Periodic validation while training (`train.val_every`): mAP and Rank-1 on the data set's
validation split, never on its test split.

Queries and gallery: the parser's protocol named "val" when it has one (DeepChange, LaST:
val_query vs val_gallery); for the PRCC layout (PRCC and the synthetic set) the val split's
camera C images as queries against its camera A images in the clothes-changing mode, the
reading of PRCC's own "cc" test protocol (C vs A). Validation identities are disjoint from the
training ones in both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ccreid.datasets.prcc import CAMERAS as PRCC_CAMERAS
from ccreid.errors import CCReIDError
from ccreid.evaluate import distances
from ccreid.extract import embed
from ccreid.images import read_rows
from ccreid.metrics import query_ranks, summarize
from ccreid.prepare import PreparedData

VAL_PROTOCOL = "val"


@dataclass
class Split:
    images: torch.Tensor  # uint8 N×3×H×W
    labels: dict[str, torch.Tensor]  # pids, camids, clothes

    @classmethod
    def read(cls, data: PreparedData, rows: np.ndarray) -> Split:
        part = data.samples.loc[rows]
        labels = {name: torch.tensor(part[column].to_numpy(np.int64))
                  for name, column in (("pids", "pid"), ("camids", "camid"), ("clothes", "clothes_label"))}
        return cls(read_rows(data.images_path, rows), labels)


@dataclass
class ValidationSet:
    query: Split
    gallery: Split
    mode: str

    def evaluate(self, model: torch.nn.Module, eval_cfg: dict, device: torch.device) -> dict[str, float]:
        """mAP and R1 of `model` (left in eval mode) under the run's evaluation settings."""
        model.eval()
        feats = [torch.as_tensor(embed(model, split.images, eval_cfg["batch_size"], eval_cfg["flip"], device))
                 for split in (self.query, self.gallery)]
        ap, first, inp, _ = query_ranks(
            distances(feats[0], feats[1], eval_cfg["distance"]),
            self.query.labels["pids"], self.gallery.labels["pids"],
            self.query.labels["camids"], self.gallery.labels["camids"],
            self.query.labels["clothes"], self.gallery.labels["clothes"], mode=self.mode,
        )
        summary = summarize(ap, first, inp, max_rank=1)
        return {"mAP": summary["mAP"], "R1": float(summary["cmc"][0])}


def validation_set(data: PreparedData, dataset: dict) -> ValidationSet:
    """The validation queries and gallery of a prepared data set (`dataset`: run_cfg["dataset"])."""
    samples = data.samples
    protocol = next((p for p in data.protocols if p.name == VAL_PROTOCOL), None)
    if protocol is not None:
        query = samples.index[samples["split"] == protocol.query].to_numpy()
        gallery = samples.index[samples["split"] == protocol.gallery].to_numpy()
        mode = protocol.mode
    elif dataset["layout"] == "prcc":
        val = samples["split"] == "val"
        query = samples.index[val & (samples["camid"] == PRCC_CAMERAS["C"])].to_numpy()
        gallery = samples.index[val & (samples["camid"] == PRCC_CAMERAS["A"])].to_numpy()
        mode = "cc"
    else:
        query = gallery = np.array([], dtype=np.int64)
    if len(query) == 0 or len(gallery) == 0:
        raise CCReIDError(
            f"train.val_every > 0 but data set {dataset['name']!r} (layout {dataset['layout']}) has no "
            "validation queries and gallery; set train.val_every: 0"
        )
    return ValidationSet(Split.read(data, query), Split.read(data, gallery), mode)

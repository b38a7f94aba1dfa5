"""Evaluation while training: the validation split (`train.val_every`) and, as CAL does, the
test protocols (`eval.test_every`). Both are logged; neither picks the model (metrics.json is the
last epoch's), and the test figures are labelled as selection on the test set where shown.

Validation queries and gallery: the parser's protocol named "val" when it has one (DeepChange,
LaST: val_query vs val_gallery); for the PRCC layout (PRCC and the synthetic set) the val split's
camera C images as queries against its camera A images in the clothes-changing mode, the reading
of PRCC's own "cc" test protocol (C vs A). Validation identities are disjoint from the training
ones in both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ccreid.core.errors import CCReIDError
from ccreid.core.schema import DatasetSection, EvalCfg, RunConfig
from ccreid.data.images import read_rows
from ccreid.data.layouts.base import Protocol
from ccreid.data.layouts.prcc import CAMERAS as PRCC_CAMERAS
from ccreid.data.prepared import PreparedData
from ccreid.evaluation.embedding import embed
from ccreid.evaluation.metrics import summarize
from ccreid.evaluation.scoring import restrict, score

VAL_PROTOCOL = "val"


@dataclass
class Split:
    images: torch.Tensor  # uint8 N×3×H×W
    labels: dict[str, np.ndarray]  # pids, camids, clothes

    @classmethod
    def read(cls, data: PreparedData, rows: np.ndarray) -> Split:
        part = data.samples.loc[rows]
        labels = {
            name: part[column].to_numpy(np.int64)
            for name, column in (("pids", "pid"), ("camids", "camid"), ("clothes", "clothes_label"))
        }
        return cls(read_rows(data.images_path, rows), labels)


@dataclass
class Monitor:
    """Protocols evaluated together, scored as evaluation scores them (ccreid.evaluation.scoring);
    each split is embedded once per evaluation. A protocol named "" gives plain keys."""

    splits: dict[str, Split]
    protocols: list[Protocol]

    def evaluate(self, model: torch.nn.Module, eval_cfg: EvalCfg, device: torch.device) -> dict[str, float]:
        """mAP and R1 of `model` (left in eval mode) per protocol, under the run's evaluation settings."""
        model.eval()
        embedded = {
            name: {"feats": embed(model, split.images, eval_cfg, device), **split.labels}
            for name, split in self.splits.items()
        }
        metrics: dict[str, float] = {}
        for protocol in self.protocols:
            query, gallery = (restrict(embedded[split], protocol) for split in (protocol.query, protocol.gallery))
            ap, first, inp, _ = score(query, gallery, protocol.mode, eval_cfg, device)
            summary = summarize(ap, first, inp, max_rank=1)
            prefix = f"{protocol.name}/" if protocol.name else ""
            metrics |= {f"{prefix}mAP": summary["mAP"], f"{prefix}R1": float(summary["cmc"][0])}
        return metrics


def validation_set(data: PreparedData, dataset: DatasetSection) -> Monitor:
    """The validation queries and gallery of a prepared data set (`dataset`: a run config's)."""
    samples = data.samples
    protocol = next((p for p in data.protocols if p.name == VAL_PROTOCOL), None)
    if protocol is not None:
        query = samples.index[samples["split"] == protocol.query].to_numpy()
        gallery = samples.index[samples["split"] == protocol.gallery].to_numpy()
        mode = protocol.mode
    elif dataset.layout == "prcc":
        val = samples["split"] == "val"
        query = samples.index[val & (samples["camid"] == PRCC_CAMERAS["C"])].to_numpy()
        gallery = samples.index[val & (samples["camid"] == PRCC_CAMERAS["A"])].to_numpy()
        mode = "cc"
    else:
        query = gallery = np.array([], dtype=np.int64)
    if len(query) == 0 or len(gallery) == 0:
        raise CCReIDError(
            f"train.val_every > 0 but data set {dataset.name!r} (layout {dataset.layout}) has no "
            "validation queries and gallery; set train.val_every: 0"
        )
    splits = {"query": Split.read(data, query), "gallery": Split.read(data, gallery)}
    return Monitor(splits, [Protocol("", query="query", gallery="gallery", mode=mode)])


def test_monitor(data: PreparedData) -> Monitor:
    """Every multi-shot test protocol of a prepared data set (validation left out)."""
    samples = data.samples
    protocols = [p for p in data.protocols if p.name != VAL_PROTOCOL and not p.single_shot]
    splits = {
        split: Split.read(data, samples.index[samples["split"] == split].to_numpy())
        for split in sorted({name for p in protocols for name in (p.query, p.gallery)})
    }
    return Monitor(splits, protocols)


def training_monitors(data: PreparedData, run_cfg: RunConfig) -> dict[str, Monitor]:
    """The monitors a run's training evaluates: "validation" (train.val_every), "test" (eval.test_every)."""
    monitors = {}
    if run_cfg.train.val_every:
        monitors["validation"] = validation_set(data, run_cfg.dataset)
    if run_cfg.eval.test_every:
        monitors["test"] = test_monitor(data)
    return monitors

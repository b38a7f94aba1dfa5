"""Command `smoke`: a run's new module exercised end to end in seconds — a few batches of the
run's last epoch (every loss term on), then embeddings and every protocol's metrics on a few
identities of the test splits. Its one output, smoke/<ds>/<exp>/smoke.json, lives apart from
results/ and says what it is: no stage, table or report reads it."""

from __future__ import annotations

import dataclasses
import itertools
import time
from pathlib import Path

import numpy as np
import torch

from ccreid.core.atomic import atomic_write_json
from ccreid.core.devices import pick_device
from ccreid.core.schema import RunConfig
from ccreid.data.prepared import PreparedData, load_prepared
from ccreid.engine.trainer import Trainer
from ccreid.evaluation.embedding import embed_splits
from ccreid.evaluation.scoring import protocol_metrics

SMOKE_IDENTITIES = 8  # test identities embedded and scored


def _few_identities(data: PreparedData, count: int) -> PreparedData:
    """The test splits cut to the images of the first `count` gallery identities."""
    galleries = {protocol.gallery for protocol in data.protocols}
    tested = {protocol.query for protocol in data.protocols} | galleries
    samples = data.samples
    pids = np.unique(samples.loc[samples["split"].isin(galleries), "pid"])[:count]
    keep = ~samples["split"].isin(tested) | samples["pid"].isin(pids)
    return dataclasses.replace(data, samples=samples[keep])


def smoke(prepared_dir: Path, run_cfg: RunConfig, out_path: Path, batches: int = 2, device: str | None = None) -> dict:
    """Train `batches` steps of the last epoch, embed and score a few identities; write and return
    the record (losses of each step, metrics, seconds)."""
    started = time.perf_counter()
    torch_device = pick_device(device)
    torch.set_num_threads(run_cfg.train.cpu_threads)
    data = load_prepared(prepared_dir)
    # Streamed from images.h5: a few batches must not load the whole training split into memory.
    cfg = run_cfg.changed({"train": {"memory_budget_gb": 0.0}})
    trainer = Trainer(data, cfg, torch_device)
    try:
        epoch = max(cfg.train.epochs - 1, 0)  # the last epoch: every loss term past its start
        trainer.set_lr(epoch)
        trainer.network.train()
        drawn: list = []
        for sampled in itertools.count(epoch):  # a small set's epoch may hold fewer: the next epochs' follow
            drawn += trainer.sampler.epoch(sampled)
            if len(drawn) >= batches:
                break
        losses = [trainer.step(rows, trainer.images.read(rows), epoch) for rows in drawn[:batches]]
    finally:
        trainer.close()
    model = trainer.model.eval()
    splits = embed_splits(model, _few_identities(data, SMOKE_IDENTITIES), cfg.eval, torch_device)
    metrics, _, _ = protocol_metrics(splits, data.protocols, cfg.eval, torch_device)
    record = {
        "smoke": True,
        "note": f"a smoke run: {len(losses)} batch(es) of epoch {epoch + 1}, scored on {SMOKE_IDENTITIES} test "
        "identities; it checks that the run works, its numbers measure nothing",
        "experiment": run_cfg.experiment,
        "losses": losses,
        "metrics": metrics,
        "seconds": round(time.perf_counter() - started, 1),
    }
    atomic_write_json(Path(out_path), record)
    return record

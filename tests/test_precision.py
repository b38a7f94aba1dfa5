"""The GPU switches on the CPU: autocast (bf16, fp16 with the grad scaler), channels_last, and
extraction and evaluation through the same torch code. Marked `cuda`: they run on the device
named by CCREID_TEST_DEVICE (default cpu); benchmarks/gpu_check.py runs them on a GPU.

Tolerances: bf16 keeps 8 bits of mantissa (relative rounding 2^-8 ≈ 0.4 %), fp16 11 bits; a
loss over a batch averages many such roundings, so one step's loss agrees with float32 to about
1 % (bf16) and 0.2 % (fp16); embeddings, L2-normalised, to a cosine above 0.99.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ccreid.core.config import Params
from ccreid.core.distributed import World
from ccreid.core.schema import RunConfig
from ccreid.data.images import read_rows
from ccreid.data.prepared import load_prepared
from ccreid.engine.trainer import Trainer
from ccreid.evaluation.embedding import embed
from ccreid.evaluation.features import read_features
from ccreid.evaluation.scoring import protocol_metrics
from ccreid.models.checkpoint import load_model, load_training_state, save_training_state
from helpers import engine_params, run

pytestmark = [pytest.mark.cuda, pytest.mark.slow]
DEVICE = torch.device(os.environ.get("CCREID_TEST_DEVICE", "cpu"))
PREPARED = Path("data/prepared/synthetic")
LOSS_TOLERANCE = {"bf16": 0.02, "fp16": 0.005}


def params() -> dict:
    """The engine's tiny set at the tests' schedule: clothes losses on from epoch 1 (of 2)."""
    return engine_params()


def config(amp: str = "off", memory_format: str = "contiguous", **eval_cfg) -> RunConfig:
    precision = {"amp": amp, "memory_format": memory_format}
    return Params(params()).run_config("synthetic", "212").changed({"train": precision, "eval": precision | eval_cfg})


@pytest.fixture(scope="module")
def project(tmp_path_factory, synthetic_project) -> Path:
    return synthetic_project(tmp_path_factory.mktemp("precision") / "project", params())


def steps(trainer: Trainer, epochs=(0, 1), per_epoch: int = 3) -> list[dict[str, float]]:
    """The logged terms of a few steps per epoch (epoch 1: clothes classifier and adversarial loss)."""
    logged = []
    for epoch in epochs:
        trainer.set_lr(epoch)
        trainer.network.train()
        for rows in trainer.sampler.epoch(epoch)[:per_epoch]:
            logged.append(trainer.step(rows, trainer.images.read(rows), epoch))
    return logged


def trainer(project: Path, cfg: dict) -> Trainer:
    return Trainer(load_prepared(project / PREPARED), cfg, DEVICE, World())


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_autocast_and_channels_last_train_like_float32(project, amp):
    reference = steps(trainer(project, config()))
    mixed_trainer = trainer(project, config(amp, "channels_last"))
    mixed = steps(mixed_trainer)
    assert all(np.isfinite(list(step.values())).all() for step in mixed)
    first, second = reference[0]["total"], mixed[0]["total"]  # same weights, same batch
    assert abs(second - first) / first < LOSS_TOLERANCE[amp], (first, second)
    weight = next(p for p in mixed_trainer.model.parameters() if p.ndim == 4)
    assert weight.is_contiguous(memory_format=torch.channels_last)
    assert weight.dtype == torch.float32  # autocast: float32 master weights
    scaler = mixed_trainer.scaler
    assert scaler.is_enabled() == (amp == "fp16")
    if amp == "fp16":  # the scaler really ran: its scale is set and travels in the checkpoint
        assert scaler.get_scale() > 0 and mixed_trainer.state(0, 6, [])["scaler"]["scale"] == scaler.get_scale()


def test_resume_from_a_checkpoint_is_exact_with_bf16_and_channels_last(project, tmp_path):
    cfg = config("bf16", "channels_last")
    whole = trainer(project, cfg)
    straight = steps(whole)
    first = trainer(project, cfg)
    steps(first, epochs=(0,))
    save_training_state(first.state(0, 3, []), tmp_path / "checkpoint.pt")
    resumed = trainer(project, cfg)
    resumed.load_state(load_training_state(tmp_path / "checkpoint.pt"))
    after = steps(resumed, epochs=(1,))
    assert after == straight[3:]
    for (key, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), key


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_extraction_with_autocast_and_channels_last_is_close_to_float32(project, amp):
    run(["ccreid", "train", "--dataset", "synthetic", "--exp", "212"], cwd=project)
    model = load_model(project / "results/synthetic/212/model.pt", DEVICE)
    data = load_prepared(project / PREPARED)
    rows = data.samples.index[data.samples["split"] == "gallery"].to_numpy()
    batch = read_rows(data.images_path, rows)
    plain = embed(model, batch, config().eval, DEVICE)
    mixed = embed(model, batch, config(amp, "channels_last").eval, DEVICE)
    assert mixed.dtype == np.float32 and np.isfinite(mixed).all()
    cosine = (plain * mixed).sum(axis=1)
    assert cosine.min() > 0.99, cosine.min()


def test_evaluation_on_the_device_gives_the_cpu_numbers(project, tmp_path):
    """The same scoring code on DEVICE and on the CPU (on a CPU-only machine this checks the
    chunked path against itself, on a GPU machine the GPU against the CPU)."""
    work = tmp_path / "work"
    shutil.copytree(project, work)
    run(["ccreid", "train", "--dataset", "synthetic", "--exp", "212"], cwd=work)
    run(["ccreid", "extract", "--dataset", "synthetic", "--exp", "212"], cwd=work)
    splits, protocols = read_features(work / "results/synthetic/212/features.h5")
    eval_cfg = config().eval
    on_device = protocol_metrics(splits, protocols, eval_cfg, DEVICE)[0]
    on_cpu = protocol_metrics(splits, protocols, eval_cfg, torch.device("cpu"))[0]
    assert on_device.keys() == on_cpu.keys() and on_cpu
    for name in on_cpu:
        for key, value in on_cpu[name].items():
            assert on_device[name][key] == pytest.approx(value, abs=1e-6), (name, key)


def test_embedding_leaves_the_model_in_its_layout(project):
    """Monitors embed with the model being trained: eval.memory_format lays out the inputs only,
    so a contiguous training run stays contiguous while it evaluates channels_last."""
    model = trainer(project, config()).model.eval()
    data = load_prepared(project / PREPARED)
    rows = data.samples.index[data.samples["split"] == "gallery"].to_numpy()[:4]
    embed(model, read_rows(data.images_path, rows), config(memory_format="channels_last").eval, DEVICE)
    weight = next(p for p in model.parameters() if p.ndim == 4)
    assert weight.is_contiguous() and not weight.is_contiguous(memory_format=torch.channels_last)

"""The training engine: exact resume after SIGKILL, streamed = in-memory input, refused
checkpoints, the NaN stop, validation logging and DDP through a real torchrun."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from ccreid.core.config import Params
from ccreid.core.distributed import World
from ccreid.core.errors import CCReIDError
from ccreid.core.paths import CHECKPOINT, LIVE_DIR
from ccreid.core.schema import RunConfig
from ccreid.data.images import read_rows
from ccreid.data.layouts.base import Protocol
from ccreid.data.loader import InMemoryImages, Prefetcher, StreamedImages, open_training_images
from ccreid.data.prepared import load_prepared
from ccreid.data.sampler import IdentitySampler
from ccreid.engine import trainer as train_module
from ccreid.engine.losses.triplet import batch_hard_triplet
from ccreid.engine.trainer import Trainer
from ccreid.engine.training_log import TrainingLog
from ccreid.models.checkpoint import load_model, load_training_state, save_training_state
from ccreid.stages.train import train
from helpers import engine_params, run, tiny_params, write_project

pytestmark = pytest.mark.slow

TRAIN = ["ccreid", "train", "--dataset", "synthetic", "--exp", "212"]
KILLPOINT = Path(__file__).with_name("killpoint.py")
MODEL = Path("results/synthetic/212/model.pt")
PREPARED = Path("data/prepared/synthetic")


def four_epoch_params() -> dict:
    """The engine's tiny set with 4 epochs (60 × 1/15): milestones at 1 and 3, clothes losses from epoch 2."""
    return engine_params(schedule_scale=1 / 15)


@pytest.fixture(scope="module")
def project(tmp_path_factory, synthetic_project) -> Path:
    """A tiny project with its synthetic data set generated and prepared (copy it per run)."""
    return synthetic_project(tmp_path_factory.mktemp("engine") / "project", four_epoch_params())


def copy_project(project: Path, destination: Path, params: dict | None = None) -> Path:
    shutil.copytree(project, destination)
    if params is not None:
        write_project(destination, params)
    return destination


def run_config(params: dict, exp: str = "212") -> RunConfig:
    return Params(params).run_config("synthetic", exp)


def history(run_dir: Path) -> dict[str, str]:
    """Every DVCLive history file of a run, by path."""
    metrics = run_dir / LIVE_DIR / "plots" / "metrics"
    return {p.relative_to(metrics).as_posix(): p.read_text() for p in sorted(metrics.rglob("*.tsv"))}


def logged_steps(path: Path) -> list[int]:
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return [int(row["step"]) for row in csv.DictReader(handle, delimiter="\t")]


def assert_same_weights(a: Path, b: Path) -> None:
    first, second = torch.load(a, weights_only=True)["model"], torch.load(b, weights_only=True)["model"]
    assert first.keys() == second.keys()
    different = [key for key in first if not torch.equal(first[key], second[key])]
    assert not different, f"tensors differ: {different[:5]}"


def evaluate(root: Path) -> dict:
    run(["ccreid", "extract", "--dataset", "synthetic", "--exp", "212"], cwd=root)
    run(["ccreid", "evaluate", "--dataset", "synthetic", "--exp", "212"], cwd=root)
    return json.loads((root / MODEL.parent / "metrics.json").read_text())


# ------------------------------------------------------------------ exact resume after SIGKILL
def test_killed_run_resumes_to_the_same_weights_metrics_and_logs(project, tmp_path):
    whole = copy_project(project, tmp_path / "whole")
    killed = copy_project(project, tmp_path / "killed")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    uninterrupted = subprocess.Popen(TRAIN, cwd=whole, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    # Killed at a fixed point, whatever the machine's speed: as the third step of the second
    # epoch is logged (train/lr.tsv gets one row per step, and no other file has its name),
    # after the first epoch's checkpoint.
    tcfg = run_config(four_epoch_params()).train
    samples = load_prepared(project / PREPARED).samples
    first_epoch = len(
        IdentitySampler(
            samples.loc[samples["split"] == "train", "label"].to_numpy(),
            tcfg.ids_per_batch,
            tcfg.images_per_id,
            tcfg.seed,
        ).epoch(0)
    )
    victim = subprocess.run(
        [sys.executable, str(KILLPOINT), "nth", "lr.tsv", str(first_epoch + 3), "--", *TRAIN[1:]],
        cwd=killed,
        env=env,
        capture_output=True,
        text=True,
        start_new_session=True,
    )
    assert victim.returncode == -signal.SIGKILL, victim.stderr
    run_dir = killed / MODEL.parent
    steps_file = run_dir / LIVE_DIR / "plots" / "metrics" / "train" / "total.tsv"
    assert not (killed / MODEL).exists()
    checkpoint = load_training_state(run_dir / CHECKPOINT)
    assert checkpoint["epoch"] == 0
    # Killed mid-epoch: two steps after the checkpoint were logged and will be replayed.
    assert len(logged_steps(steps_file.with_name("lr.tsv"))) == checkpoint["step"] + 2

    resumed = run(TRAIN, cwd=killed)
    assert f"epoch {checkpoint['epoch'] + 1}/4" not in resumed.stderr  # the finished epochs are not redone
    assert uninterrupted.wait(timeout=300) == 0, uninterrupted.stdout.read().decode()
    assert_same_weights(whole / MODEL, killed / MODEL)
    # The history has one row per step, equal to the uninterrupted run's (same losses, bit for bit).
    assert history(killed / MODEL.parent) == history(whole / MODEL.parent)
    steps = logged_steps(steps_file)
    assert steps == list(range(len(steps)))
    assert evaluate(killed) == evaluate(whole)


def test_the_history_syncs_once_an_epoch_with_one_row_a_step(tmp_path, monkeypatch):
    """DVCLive's sync (the summary, and a re-read of every history file for Studio) runs at each
    epoch's last step, not at each batch: per batch it made logging quadratic in the steps. The
    history keeps one row a step, the epoch's figures on its last step."""
    from dvclive import Live

    synced_at, sync = [], Live.sync
    monkeypatch.setattr(Live, "sync", lambda live: (synced_at.append(live.step), sync(live))[1])
    log = TrainingLog(tmp_path / "live", total_epochs=2, resume_step=None, enabled=True)
    for epoch in range(2):
        log.start_epoch(epoch, batches=5)
        for _ in range(5):
            log.batch({"id": 1.0}, lr=0.1)
        log.end_epoch(images=20, validation={}, test={})
    log.close()
    metrics = tmp_path / "live" / "plots" / "metrics"
    assert logged_steps(metrics / "train" / "lr.tsv") == list(range(10))
    assert logged_steps(metrics / "epoch" / "epoch.tsv") == [4, 9]
    assert synced_at[:2] == [4, 9] and len(synced_at) <= 3  # and Live.end's own


# ------------------------------------------------------------------ input pipeline
def test_streamed_batches_equal_in_memory_batches(project):
    data = load_prepared(project / PREPARED)
    train_rows = data.samples.index[data.samples["split"] == "train"].to_numpy()
    in_memory = open_training_images(data.images_path, train_rows, memory_budget_gb=1.0)
    streamed = open_training_images(data.images_path, train_rows, memory_budget_gb=0.0)
    assert isinstance(in_memory, InMemoryImages) and isinstance(streamed, StreamedImages)
    labels = data.samples.loc[train_rows, "label"].to_numpy()
    batches = IdentitySampler(labels, 4, 4, seed=1).epoch(0)
    try:
        with Prefetcher(in_memory, batches) as a, Prefetcher(streamed, batches, depth=1) as b:
            pairs = list(zip(a, b))
    finally:
        streamed.close()
    assert len(pairs) == len(batches) > 1
    for rows, (first, second) in zip(batches, pairs):
        assert torch.equal(first, second)
        assert torch.equal(first, read_rows(data.images_path, train_rows[rows]))


def test_prefetcher_hands_a_reader_error_to_the_consumer(project):
    class Failing:
        def read(self, rows):
            raise CCReIDError("images.h5: cannot read")

    with pytest.raises(CCReIDError, match="cannot read"):
        with Prefetcher(Failing(), [np.arange(4)] * 3) as loader:
            list(loader)


def test_streamed_training_and_validation_leave_the_weights_unchanged(project, tmp_path):
    """memory_budget_gb and val_every are runtime keys: same weights; validation is logged."""
    params = tiny_params(images_per_camera=6, height=64, width=32)  # 2 epochs, clothes from epoch 1
    params["datasets"]["synthetic"]["size"] = [64, 32]
    params["defaults"]["train"]["ids_per_batch"] = 4
    plain = run_config(params)
    streamed_with_val = plain.changed({"train": {"memory_budget_gb": 0.0, "val_every": 1}})
    train(project / PREPARED, plain, tmp_path / "memory" / "model.pt")
    train(project / PREPARED, streamed_with_val, tmp_path / "streamed" / "model.pt")
    assert_same_weights(tmp_path / "memory" / "model.pt", tmp_path / "streamed" / "model.pt")
    metrics = tmp_path / "streamed" / LIVE_DIR / "plots" / "metrics"
    assert logged_steps(metrics / "val" / "mAP.tsv") == logged_steps(metrics / "epoch" / "epoch.tsv")
    assert len(logged_steps(metrics / "val" / "R1.tsv")) == 2
    assert not (tmp_path / "memory" / LIVE_DIR / "plots" / "metrics" / "val").exists()


def test_zero_epochs_saves_the_network_as_training_initialises_it(project, tmp_path):
    """212init (train.epochs 0): the model file holds the initial weights of 212's training, drawn
    from the same seed, and nothing was logged or left to resume."""
    untrained = run_config(four_epoch_params(), "212init")
    assert untrained.train.epochs == 0  # the schedule scale leaves 0 at 0
    model = train(project / PREPARED, untrained, tmp_path / "212init" / "model.pt")
    trainer = Trainer(load_prepared(project / PREPARED), run_config(four_epoch_params()), torch.device("cpu"))
    try:
        initial = {key: value for key, value in trainer.model.state_dict().items() if "clothes" not in key}
    finally:
        trainer.close()
    saved = load_model(model, torch.device("cpu")).state_dict()
    assert saved.keys() == initial.keys()
    assert all(torch.equal(saved[key], initial[key]) for key in initial)
    assert not (model.parent / CHECKPOINT).exists()
    assert not history(model.parent)


def test_validation_uses_prcc_val_cameras_c_against_a_and_needs_a_val_split(project):
    from ccreid.evaluation.validation import validation_set

    data = load_prepared(project / PREPARED)
    dataset = run_config(four_epoch_params()).dataset
    val = validation_set(data, dataset.model_copy(update={"layout": "prcc"}))
    query, gallery = val.splits["query"], val.splits["gallery"]
    assert set(query.labels["camids"].tolist()) == {2} and set(gallery.labels["camids"].tolist()) == {0}
    assert val.protocols == [Protocol("", query="query", gallery="gallery", mode="cc")]
    train_pids = set(data.samples.loc[data.samples["split"] == "train", "pid"])
    assert not train_pids & set(query.labels["pids"].tolist())
    with pytest.raises(CCReIDError, match="train.val_every"):
        validation_set(
            data, dataset.model_copy(update={"name": "other", "layout": "ltcc"})
        )  # no "val" protocol, not PRCC


# ------------------------------------------------------------------ refused checkpoints, NaN stop
def test_checkpoint_from_another_config_is_refused_naming_the_key(project, tmp_path):
    params = four_epoch_params()
    old = run_config(params)
    trainer = Trainer(load_prepared(project / PREPARED), old, torch.device("cpu"))
    (tmp_path / "run").mkdir()
    save_training_state(trainer.state(epoch=0, step=7, test_curve=[]), tmp_path / "run" / CHECKPOINT)
    new = old.changed({"train": {"lr": 1e-3}})
    with pytest.raises(CCReIDError) as error:
        train(project / PREPARED, new, tmp_path / "run" / "model.pt")
    message = str(error.value)
    assert "different training config" in message and f"train.lr: {old.train.lr!r} -> 0.001" in message
    runtime_only = old.changed({"train": {"memory_budget_gb": 0.0}})  # a runtime key: the checkpoint stays valid
    assert train_module._load_checkpoint(tmp_path / "run" / CHECKPOINT, runtime_only, 1)["epoch"] == 0
    with pytest.raises(CCReIDError, match="this run has 2"):
        train_module._load_checkpoint(tmp_path / "run" / CHECKPOINT, runtime_only, 2)


def test_non_finite_loss_stops_naming_step_terms_and_last_checkpoint(project, tmp_path, monkeypatch):
    schedule = train_module.lr_factor
    # An infinite learning rate from the second epoch: the weights blow up in its first step.
    monkeypatch.setattr(
        train_module, "lr_factor", lambda epoch, cfg: float("inf") if epoch >= 1 else schedule(epoch, cfg)
    )
    model_path = tmp_path / "run" / "model.pt"
    with pytest.raises(CCReIDError) as error:
        train(project / PREPARED, run_config(four_epoch_params()), model_path)
    message = str(error.value)
    assert "non-finite loss at epoch 2, batch 2" in message and "(step " in message
    assert "'id':" in message and "'total':" in message
    assert f"{model_path.parent / CHECKPOINT} (end of epoch 1)" in message
    assert not model_path.exists()
    assert load_training_state(model_path.parent / CHECKPOINT)["epoch"] == 0


# ------------------------------------------------------------------ several processes
def test_world_shards_cover_the_global_batch_in_order():
    rows = np.arange(16)
    shards = [World(rank=r, size=4).shard(rows) for r in range(4)]
    assert np.array_equal(np.concatenate(shards), rows)
    with pytest.raises(CCReIDError, match="ids_per_batch"):
        World(rank=0, size=3).check_divides(16)


def _toy_loss(model, images, pids, world: World) -> torch.Tensor:
    """Identity CE on the rank's shard + triplet on the features gathered across ranks."""
    features = model(images)
    return torch.nn.functional.cross_entropy(features[:, :4], pids) + batch_hard_triplet(
        world.gather_with_grad(features), world.gather(pids), 0.3
    )


def _toy_batch():
    torch.manual_seed(0)
    return torch.nn.Linear(8, 6), torch.randn(16, 8), torch.arange(4).repeat_interleave(4)


def _ddp_gradient_worker(rank: int, init_file: str, gradients) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    model, images, pids = _toy_batch()
    world = World(rank=rank, size=2)
    wrapped = DistributedDataParallel(model)  # kept alive: its hooks average the gradients in backward
    _toy_loss(wrapped, world.shard(images), world.shard(pids), world).backward()
    gradients.put((rank, model.weight.grad.tolist()))
    dist.destroy_process_group()


def test_two_ranks_on_shards_get_the_single_process_gradient(tmp_path):
    model, images, pids = _toy_batch()
    _toy_loss(model, images, pids, World()).backward()
    context = mp.get_context("spawn")
    gradients = context.Queue()
    workers = [
        context.Process(target=_ddp_gradient_worker, args=(rank, str(tmp_path / "init"), gradients))
        for rank in range(2)
    ]
    for worker in workers:
        worker.start()
    # Limits against a hang only, as long as any command's in these tests: a loaded machine may
    # take long to start two spawned interpreters.
    received = [gradients.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join(timeout=600)
        assert worker.exitcode == 0
    for _, gradient in received:
        torch.testing.assert_close(torch.tensor(gradient), model.weight.grad, rtol=1e-6, atol=1e-6)


def test_torchrun_two_cpu_processes_train_one_model(project, tmp_path):
    params = four_epoch_params()
    params["datasets"]["synthetic"]["schedule_scale"] = 0.03  # 2 epochs; aux head and clothes from epoch 1
    # Full modules (aux head unused in epoch 0, clothes classifier outside DDP) and the triplet
    # loss on features gathered across the two ranks.
    params["datasets"]["synthetic"]["overrides"]["loss"]["triplet"] = {"enabled": True}
    root = copy_project(project, tmp_path / "ddp", params)
    result = run(
        [
            "torchrun",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "ccreid",
            "train",
            "--dataset",
            "synthetic",
            "--exp",
            "208",
        ],
        cwd=root,
    )
    assert [p.relative_to(root) for p in root.rglob("model.pt")] == [Path("results/synthetic/208/model.pt")]
    model = load_model(root / "results/synthetic/208/model.pt", torch.device("cpu"))
    assert model.aux_head is not None and model.multiscale is not None
    assert not (root / "results/synthetic/208" / CHECKPOINT).exists()  # a finished run keeps none
    assert result.stderr.count("epoch 2/2") == 1  # rank 0 alone reports
    steps = logged_steps(root / "results/synthetic/208" / LIVE_DIR / "plots" / "metrics" / "train" / "triplet.tsv")
    assert steps == list(range(len(steps))) and steps


def test_test_every_logs_the_test_protocols_and_writes_the_curve(project, tmp_path):
    """eval.test_every: 1 on a 2-epoch run: both epochs evaluated on every multi-shot test protocol,
    logged with DVCLive and written beside model.pt; the weights are those of a run without it."""
    params = four_epoch_params()
    params["datasets"]["synthetic"]["schedule_scale"] = 0.03
    plain = copy_project(project, tmp_path / "plain", params)
    params["defaults"]["eval"]["test_every"] = 1
    tested = copy_project(project, tmp_path / "tested", params)
    for root in (plain, tested):
        run(TRAIN, cwd=root)
    curve = json.loads((tested / MODEL.parent / "test_curve.json").read_text())
    assert [row["epoch"] for row in curve["epochs"]] == [1, 2]
    assert {key for key in curve["epochs"][0] if key != "epoch"} == {"cc/mAP", "cc/R1", "sc/mAP", "sc/R1"}
    assert logged_steps(tested / MODEL.parent / LIVE_DIR / "plots" / "metrics" / "test" / "cc" / "R1.tsv")
    assert not (plain / MODEL.parent / "test_curve.json").exists()
    assert_same_weights(plain / MODEL, tested / MODEL)
    # One scorer: the last epoch's test figures are the evaluated model's metrics.json.
    for stage in ("extract", "evaluate"):
        run(["ccreid", stage, "--dataset", "synthetic", "--exp", "212"], cwd=tested)
    metrics = json.loads((tested / MODEL.parent / "metrics.json").read_text())
    last = curve["epochs"][-1]
    assert {key: last[key] for key in ("cc/mAP", "sc/R1")} == {
        "cc/mAP": metrics["cc"]["mAP"],
        "sc/R1": metrics["sc"]["R1"],
    }


def ghost_batchnorm_config() -> RunConfig:
    """208 (BatchNorm in backbone, OS blocks, gates, neck and aux head; aux head unused in epoch
    0) with the triplet loss, P×K = 16 in BatchNorm groups of 8: two DDP ranks of 8 each."""
    params = four_epoch_params()
    params["datasets"]["synthetic"]["overrides"]["loss"]["triplet"] = {"enabled": True}
    params["defaults"]["train"]["bn_batch"] = 8
    return Params(params).run_config("synthetic", "208")


def _train_steps(trainer: Trainer, world: World) -> dict[str, torch.Tensor]:
    """Two steps in epoch 0, two in epoch 1 (clothes classifier, adversarial loss, aux head on)."""
    for epoch in (0, 1):
        trainer.set_lr(epoch)
        for rows in trainer.sampler.epoch(epoch)[:2]:
            shard = world.shard(rows)
            trainer.step(shard, trainer.images.read(shard), epoch)
    return {key: value.clone() for key, value in trainer.model.state_dict().items()}


def _ghost_batchnorm_worker(rank: int, init_file: str, prepared: str, cfg: RunConfig, states) -> None:
    torch.set_default_dtype(torch.float64)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    world = World(rank=rank, size=2)
    state = _train_steps(Trainer(load_prepared(Path(prepared)), cfg, torch.device("cpu"), world), world)
    if rank == 0:
        states.put({key: value.numpy() for key, value in state.items()})
    dist.destroy_process_group()


def test_one_process_with_ghost_batchnorm_trains_as_two_ddp_ranks(project, tmp_path):
    """CAL trains on 2 GPUs × 32 without SyncBN. One process with train.bn_batch = the per-rank
    batch must reach the weights and BatchNorm running statistics of two DDP ranks (gloo), with
    augmentation on. In float64: in float32 the two runs agree to rounding (1e-7) per step, but
    Adam's first updates are lr·sign(g) for gradients that cancel to ~0, so rounding alone flips
    a few elements by 2·lr."""
    cfg = ghost_batchnorm_config()
    context = mp.get_context("spawn")
    states = context.Queue()
    workers = [
        context.Process(
            target=_ghost_batchnorm_worker, args=(rank, str(tmp_path / "init"), str(project / PREPARED), cfg, states)
        )
        for rank in range(2)
    ]
    for worker in workers:
        worker.start()
    two = states.get(timeout=300)
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    torch.set_default_dtype(torch.float64)
    try:
        one = _train_steps(Trainer(load_prepared(project / PREPARED), cfg, torch.device("cpu")), World())
        whole_batch = _train_steps(
            Trainer(
                load_prepared(project / PREPARED),
                cfg.changed({"train": {"bn_batch": 0}}),
                torch.device("cpu"),
            ),
            World(),
        )
    finally:
        torch.set_default_dtype(torch.float32)
    assert two.keys() == one.keys() and any(key.endswith("running_var") for key in one)
    for key, value in one.items():
        torch.testing.assert_close(torch.from_numpy(two[key]), value, rtol=1e-5, atol=1e-5, msg=key)
    assert not torch.allclose(whole_batch["neck.running_var"], one["neck.running_var"])  # it does matter

"""The training engine: the CAL recipe and the lab log's modules, one epoch loop.

The loop per batch (CAL style, two optimizers): identity loss (+ triplet, auxiliary head,
distillation when on); the clothes classifier learns on detached embeddings with its own
optimizer; the clothes-adversarial loss pushes the backbone with the freshly updated classifier.

Input: the P×K sampler's batches (deterministic from the seed and the epoch), read ahead by
ccreid.data.loader from memory or from images.h5, augmented on the training device
(ccreid.data.augment). On any device: autocast (train.amp, fp16 with the grad scaler) and channels_last
(train.memory_format); on CUDA only: pinned host batches and non-blocking copies.

Exact resume: after every epoch a checkpoint is written atomically (model, both optimizers, the
AMP scaler, every process's RNG states, epoch and step). Started again with the same command a
killed run resumes from it and ends with the same weights, bit for bit on CPU; the DVCLive
history keeps one row per step (the killed epoch's rows are dropped before it is replayed).

Several processes (DDP; NCCL on CUDA, gloo on CPU): each rank trains on its shard of every
global P×K batch; the triplet loss sees the whole batch (features gathered across ranks); rank 0
alone writes checkpoint, model and logs.

The loss terms are registry members (engine/losses/, one file each), built from the sections of
params.yaml `loss` that are on and added up in their order (ccreid.core.stage_code.loss_terms).

Validation and test monitoring come in as `monitors` (objects with an ``evaluate(model,
eval_cfg, device)`` method): the engine does not import evaluation code, so editing it never
retrains a run that does not monitor (docs/architecture.md)."""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import cast

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.parallel import DistributedDataParallel

from ccreid.core import fingerprint
from ccreid.core.devices import AUTOCAST_DTYPES, channels_last
from ccreid.core.distributed import World
from ccreid.core.errors import CCReIDError
from ccreid.core.registry import Registry
from ccreid.core.schema import RunConfig, TrainCfg
from ccreid.core.sections import train_section
from ccreid.core.stage_code import loss_terms, plugins_registry
from ccreid.data.augment import BatchAugment
from ccreid.data.loader import Prefetcher, open_training_images
from ccreid.data.prepared import PreparedData
from ccreid.data.sampler import IdentitySampler
from ccreid.engine.losses.term import LossTerm, Step, TermContext
from ccreid.engine.training_log import TrainingLog
from ccreid.models.checkpoint import CHECKPOINT_FORMAT, load_training_state, save_training_state
from ccreid.models.members import Built
from ccreid.models.reid import build_model


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state(device: torch.device) -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def lr_factor(epoch: int, train_cfg: TrainCfg) -> float:
    """Step schedule (×gamma at each milestone) after an optional linear warmup."""
    warmup = train_cfg.warmup_epochs
    factor = train_cfg.gamma ** sum(epoch >= m for m in train_cfg.milestones)
    if epoch < warmup:
        factor *= (epoch + 1) / (warmup + 1)
    return factor


@contextmanager
def running_stats_frozen(model: nn.Module) -> Iterator[None]:
    """BatchNorm layers normalise with batch statistics but leave their running statistics (and
    counters) untouched while the block runs."""
    layers = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    for layer in layers:
        layer.track_running_stats = False
    try:
        yield
    finally:
        for layer in layers:
            layer.track_running_stats = True


def build_loss_term(name: str, context: TermContext, registry: Registry, experiment: str) -> LossTerm:
    """The term of section `loss.<name>`, built with its section's values (but `enabled`)."""
    section = {key: value for key, value in loss_terms(context.loss)[name].items() if key != "enabled"}
    built = Built(registry, "loss", {"name": name, **section}, f"loss.{name}", experiment)
    term = built(context=context)
    if not isinstance(term, LossTerm):
        raise built.error("a loss term is a ccreid.engine.losses.term.LossTerm")
    return term


class TrainingOutputs(nn.Module):
    """The model's training outputs, with ghost BatchNorm: with `bn_batch` set, the batch goes
    through the model in consecutive sub-batches of that size, so every BatchNorm layer sees the
    statistics of `bn_batch` images: exactly the shards that DDP ranks without SyncBN see. The
    running statistics follow the first sub-batch alone, as DDP's rank 0, whose buffers it
    broadcasts before every forward.

    The auxiliary logits are dropped while no loss uses them yet: under DDP an output no loss
    reaches would leave the auxiliary head's parameters waiting for a gradient."""

    def __init__(self, model: nn.Module, bn_batch: int = 0):
        super().__init__()
        self.model, self.bn_batch = model, bn_batch

    def forward(self, images: torch.Tensor, with_aux: bool) -> dict[str, torch.Tensor]:
        chunks = images.split(self.bn_batch) if self.bn_batch else (images,)
        parts = []
        for index, chunk in enumerate(chunks):
            with running_stats_frozen(self.model) if index else nullcontext():
                parts.append(self.model(chunk))
        outputs = {key: torch.cat([part[key] for part in parts]) for key in parts[0]}
        if not with_aux:
            outputs.pop("aux_logits", None)
        return outputs


class Trainer:
    """Holds the model, optimizers and data of one training process."""

    def __init__(
        self,
        data: PreparedData,
        run_cfg: RunConfig,
        device: torch.device,
        world: World = World(),
        monitors: dict | None = None,
    ):
        self.cfg, self.device, self.world = run_cfg, device, world
        train = data.samples[data.samples["split"] == "train"]
        if train.empty:
            raise CCReIDError(f"{data.images_path.parent}: the prepared data set has no training images")
        self.labels = torch.tensor(train["label"].to_numpy(), dtype=torch.long)
        self.clothes = torch.tensor(train["clothes_label"].to_numpy(), dtype=torch.long)
        num_ids = int(self.labels.max()) + 1
        num_clothes = int(self.clothes.max()) + 1
        # positive_mask[i, c]: clothes class c belongs to identity i (CAL's adversarial loss).
        self.positive_mask = torch.zeros(num_ids, num_clothes, device=device)
        self.positive_mask[self.labels, self.clothes] = 1.0
        tcfg = run_cfg.train
        world.check_divides(tcfg.ids_per_batch * tcfg.images_per_id)
        per_process = tcfg.ids_per_batch * tcfg.images_per_id // world.size
        if tcfg.bn_batch and per_process % tcfg.bn_batch:
            raise CCReIDError(
                f"train.bn_batch = {tcfg.bn_batch} does not divide the batch of each process "
                f"({per_process} images over {world.size} process(es)); make it a divisor, or 0"
            )
        self.sampler = IdentitySampler(self.labels.numpy(), tcfg.ids_per_batch, tcfg.images_per_id, tcfg.seed)
        # "validation" and "test": evaluated on rank 0 only, by the caller's monitors.
        self.monitors = monitors or {}
        self.images = open_training_images(data.images_path, train.index.to_numpy(), tcfg.memory_budget_gb)
        seed_everything(tcfg.seed)
        # Every rank draws the same initial weights and the augmentation of the whole global batch
        # (ccreid.data.augment), so N processes train as one process with train.bn_batch does.
        registry = plugins_registry(run_cfg.plugins)
        experiment = run_cfg.experiment
        self.model = build_model(run_cfg.model, run_cfg.loss, num_ids, num_clothes, registry, experiment)
        self.model = self.model.to(device)
        self.meta = {"num_ids": num_ids, "num_clothes": num_clothes}
        self.channels_last = channels_last(tcfg.memory_format, device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.network = self._wrap(self.model)
        self.augment = BatchAugment(run_cfg.augment, registry, experiment).to(device)
        self._input = None  # float batch buffer, reused by the augmentation from step to step
        context = TermContext(self.model, run_cfg.loss, world, self.positive_mask)
        self.terms = {
            name: build_loss_term(name, context, registry, experiment).to(device) for name in loss_terms(run_cfg.loss)
        }
        main_params = [p for n, p in self.model.named_parameters() if not n.startswith("clothes_classifier.")]
        # A term's own parameters (none of ccreid's terms have any) are outside DDP's model: the step
        # averages their gradients over processes itself.
        self.term_params = [p for term in self.terms.values() if term.in_objective for p in term.parameters()]
        main_params += self.term_params
        self.optimizer = torch.optim.Adam(main_params, lr=tcfg.lr, weight_decay=tcfg.weight_decay)
        self.autocast_dtype = AUTOCAST_DTYPES.get(tcfg.amp)
        # fp16's narrow range needs loss scaling; the scaler is a no-op pass-through otherwise.
        self.scaler = torch.amp.GradScaler(device.type, enabled=tcfg.amp == "fp16")

    def _wrap(self, model: nn.Module) -> nn.Module:
        network = TrainingOutputs(model, self.cfg.train.bn_batch)
        if not self.world.distributed:
            return network
        # The clothes classifier is not called in forward and has its own optimizer and backward:
        # DDP leaves it alone and the step averages its gradients explicitly.
        ignored = [f"model.{name}" for name, _ in model.named_parameters() if name.startswith("clothes_classifier.")]
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(network, ignored)
        return DistributedDataParallel(
            network,
            device_ids=[self.device.index] if self.device.type == "cuda" else None,
            find_unused_parameters=model.aux_head is not None,  # unused before the aux start epoch
        )

    def _autocast(self):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def set_lr(self, epoch: int) -> float:
        factor = lr_factor(epoch, self.cfg.train)
        for group in self.optimizer.param_groups:
            group["lr"] = self.cfg.train.lr * factor
        for term in self.terms.values():
            term.set_lr(factor)
        return self.cfg.train.lr * factor

    def _mean_over_ranks(self, values: dict[str, torch.Tensor]) -> dict[str, float]:
        stacked = torch.stack([value.detach().float() for value in values.values()])
        return dict(zip(values, self.world.mean(stacked).tolist()))

    def step(self, rows: np.ndarray, images: torch.Tensor, epoch: int) -> dict[str, float]:
        """One optimisation step on this rank's `rows` (positions in the training split) and their
        uint8 `images`; returns the loss terms averaged over ranks. FloatingPointError (with the
        terms) when one is not finite."""
        index = torch.from_numpy(rows)
        self._input = batch = self.augment(
            images.to(self.device, non_blocking=True), out=self._input, shard=self.world.rank, shards=self.world.size
        )
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        active = {name: term for name, term in self.terms.items() if epoch >= term.start_epoch}
        with_aux = any(term.uses_aux for term in active.values())
        with self._autocast():
            # Losses in full precision: AMP's half-precision outputs upcast, others as they are.
            out = {
                key: value.to(torch.promote_types(value.dtype, torch.float32))
                for key, value in self.network(batch, with_aux=with_aux).items()
            }
        step = Step(out, self.labels[index].to(self.device), self.clothes[index].to(self.device), epoch)
        terms, monitored = {}, {}
        for name, term in active.items():  # in order: a term may use what an earlier one updated
            value = _checked_value(term(step), name, self.cfg.experiment)
            if term.in_objective:
                terms[name] = value
            else:
                monitored[term.log_name or name] = value
        loss = cast(torch.Tensor, sum(terms.values()))  # terms always holds "id": a tensor
        # Averaged over ranks, so every rank sees the same values and stops together.
        logged = self._mean_over_ranks(terms | {"total": loss} | monitored)
        if not all(math.isfinite(value) for value in logged.values()):
            raise FloatingPointError(logged)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.term_params:
            self.world.average_gradients(self.term_params)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return logged

    def monitor(self, which: str) -> dict[str, float]:
        """mAP/R1 on the validation split ("validation") or the test protocols ("test"), on rank 0
        only ({} elsewhere). Draws no random numbers: the weights are those without it."""
        monitor = self.monitors.get(which)
        if monitor is None or not self.world.is_main:
            return {}
        metrics = monitor.evaluate(self.model, self.cfg.eval, self.device)
        self.network.train()
        return metrics

    def close(self) -> None:
        self.images.close()

    def state(self, epoch: int, step: int, test_curve: list[dict]) -> dict:
        """Everything a resumed run needs. A collective: every rank calls it (RNG states)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "epoch": epoch,
            "step": step,
            "world_size": self.world.size,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "loss_terms": {
                name: {"module": term.state_dict(), **term.training_state()} for name, term in self.terms.items()
            },
            "scaler": self.scaler.state_dict(),
            "rng": self.world.gather_objects(_rng_state(self.device)),
            "test_curve": test_curve,
            "config": train_section(self.cfg),
        }

    def load_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        for name, term in self.terms.items():
            term.load_state_dict(state["loss_terms"][name]["module"])
            term.load_training_state(state["loss_terms"][name])
        self.scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"][self.world.rank], self.device)


# The batch check_training steps on: two identities x two images, each image its own outfit.
CHECK_PIDS, CHECK_CLOTHES = [0, 0, 1, 1], [0, 1, 2, 3]


def check_training(run_cfg: RunConfig) -> None:
    """Build what the run trains with — the model, its augmentation, its loss terms — with every
    member checked against its contract, and take one step of the last epoch (every term on) on a
    probe batch at the data set's size, so a mistake in a member stops before any data is read or
    anything written. On a throwaway model, with torch's random state restored afterwards."""
    registry, experiment = plugins_registry(run_cfg.plugins), run_cfg.experiment
    height, width = run_cfg.dataset.size
    pids, clothes = torch.tensor(CHECK_PIDS), torch.tensor(CHECK_CLOTHES)
    positive_mask = torch.zeros(2, 4)
    positive_mask[pids, clothes] = 1.0
    with torch.random.fork_rng(devices=[]):
        untrained = run_cfg.model.model_copy(update={"pretrained": "none"})
        model = build_model(untrained, run_cfg.loss, 2, 4, registry, experiment)
        augment = BatchAugment(run_cfg.augment, registry, experiment)
        context = TermContext(model, run_cfg.loss, World(), positive_mask)
        terms = [build_loss_term(name, context, registry, experiment) for name in loss_terms(run_cfg.loss)]
        images = augment(torch.randint(0, 256, (4, 3, height, width), dtype=torch.uint8))
        outputs = TrainingOutputs(model.train())(images, with_aux=any(term.uses_aux for term in terms))
        step = Step(outputs, pids, clothes, max(run_cfg.train.epochs - 1, 0))
        for name, term in zip(loss_terms(run_cfg.loss), terms):
            _checked_value(term(step), name, experiment)


def _checked_value(value, name: str, experiment: str) -> torch.Tensor:
    if not (isinstance(value, torch.Tensor) and value.dim() == 0):
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise CCReIDError(
            f"experiment {experiment!r}: loss term {name!r} returned {shape}; "
            "a loss term returns one scalar (a 0-dimensional tensor)"
        )
    return value


def _load_checkpoint(path: Path, run_cfg: RunConfig, world_size: int) -> dict | None:
    """The checkpoint to resume from, None when there is none; refused when it comes from another
    config or another number of processes."""
    if not path.is_file():
        return None
    state = load_training_state(path)
    changed = fingerprint.differences(state["config"], train_section(run_cfg))
    if changed:
        raise CCReIDError(
            f"{path}: checkpoint comes from a different training config:\n  "
            + "\n  ".join(changed)
            + "\nDelete it (or its folder) to train from scratch with the new config."
        )
    if state["world_size"] != world_size:
        raise CCReIDError(
            f"{path}: checkpoint was written by a run of {state['world_size']} process(es), this run has "
            f"{world_size}; resume with the same torchrun --nproc_per_node, or delete it to start over"
        )
    return state


def run_epochs(trainer: Trainer, run_cfg: RunConfig, checkpoint_path: Path, live_dir: Path) -> list[dict]:
    """Train every remaining epoch; returns the test curve (eval.test_every), one row per test."""
    world = trainer.world
    state = _load_checkpoint(checkpoint_path, run_cfg, world.size)
    start_epoch, step, test_curve = 0, 0, []
    if state is not None:
        trainer.load_state(state)
        start_epoch, step, test_curve = state["epoch"] + 1, state["step"], state["test_curve"]
        if world.is_main:
            print(f"resuming from {checkpoint_path} (end of epoch {start_epoch})", file=sys.stderr, flush=True)
    epochs, val_every = run_cfg.train.epochs, run_cfg.train.val_every
    test_every = run_cfg.eval.test_every
    log = TrainingLog(live_dir, epochs, step if state is not None else None, enabled=world.is_main)
    for epoch in range(start_epoch, epochs):
        lr = trainer.set_lr(epoch)
        trainer.network.train()
        batches = trainer.sampler.epoch(epoch)
        shards = [world.shard(rows) for rows in batches]
        log.start_epoch(epoch, len(batches))
        with Prefetcher(trainer.images, shards, pin_memory=trainer.device.type == "cuda") as loader:
            for number, (rows, images) in enumerate(zip(shards, loader)):
                try:
                    logged = trainer.step(rows, images, epoch)
                except FloatingPointError as error:
                    # Every finished epoch wrote one, so the last good one ends the previous epoch.
                    last = f"{checkpoint_path} (end of epoch {epoch})" if epoch else "none yet (first epoch)"
                    raise CCReIDError(
                        f"non-finite loss at epoch {epoch + 1}, batch {number + 1} (step {step + number}): "
                        f"terms {error.args[0]}; last good checkpoint: {last}. Lower train.lr or check the data."
                    ) from None
                log.batch(logged, lr)
        step += len(batches)
        validation = trainer.monitor("validation") if val_every and (epoch + 1) % val_every == 0 else {}
        # As CAL: every test_every epochs and after the last one.
        tested = test_every and ((epoch + 1) % test_every == 0 or epoch + 1 == epochs)
        test = trainer.monitor("test") if tested else {}
        if test:
            test_curve.append({"epoch": epoch + 1, **test})
        log.end_epoch(len(batches) * len(batches[0]) if batches else 0, validation, test)
        checkpoint = trainer.state(epoch, step, test_curve)
        if world.is_main:
            save_training_state(checkpoint, checkpoint_path)
    log.close()
    return test_curve

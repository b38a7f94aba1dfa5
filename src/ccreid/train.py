"""Stage `train`: the CAL recipe and the lab log's modules, from prepared images to model.pt.

The loop per batch (CAL style, two optimizers): identity loss (+ triplet, auxiliary head,
distillation when on); the clothes classifier learns on detached embeddings with its own
optimizer; the clothes-adversarial loss pushes the backbone with the freshly updated classifier.
A checkpoint is written atomically after every epoch; started again with the same command a
killed run resumes from it and ends with the same weights, bit for bit on CPU.
"""

from __future__ import annotations

import random
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from ccreid import fingerprint, losses
from ccreid.atomic import atomic_path
from ccreid.augment import BatchAugment
from ccreid.config import train_section
from ccreid.errors import CCReIDError
from ccreid.images import read_rows
from ccreid.models import build_model
from ccreid.prepare import load_prepared
from ccreid.sampler import IdentitySampler

CHECKPOINT = "checkpoint.pt"


def pick_device(requested: str | None = None) -> torch.device:
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def lr_factor(epoch: int, train_cfg: dict) -> float:
    """Step schedule (×gamma at each milestone) after an optional linear warmup."""
    warmup = train_cfg["warmup_epochs"]
    factor = train_cfg["gamma"] ** sum(epoch >= m for m in train_cfg["milestones"])
    if epoch < warmup:
        factor *= (epoch + 1) / (warmup + 1)
    return factor


class Trainer:
    """Holds the model, optimizers and data of one training run."""

    def __init__(self, prepared_dir: Path, run_cfg: dict, device: torch.device):
        self.cfg, self.device = run_cfg, device
        data = load_prepared(prepared_dir)
        train = data.samples[data.samples["split"] == "train"]
        if train.empty:
            raise CCReIDError(f"{prepared_dir}: the prepared data set has no training images")
        self.labels = torch.as_tensor(train["label"].to_numpy(), dtype=torch.long)
        self.clothes = torch.as_tensor(train["clothes_label"].to_numpy(), dtype=torch.long)
        num_ids = int(self.labels.max()) + 1
        num_clothes = int(self.clothes.max()) + 1
        # positive_mask[i, c]: clothes class c belongs to identity i (CAL's adversarial loss).
        self.positive_mask = torch.zeros(num_ids, num_clothes, device=device)
        self.positive_mask[self.labels, self.clothes] = 1.0
        self.images = read_rows(data.images_path, train.index.to_numpy())
        tcfg = run_cfg["train"]
        self.sampler = IdentitySampler(self.labels.numpy(), tcfg["ids_per_batch"], tcfg["images_per_id"], tcfg["seed"])
        seed_everything(tcfg["seed"])
        self.model = build_model(run_cfg["model"], run_cfg["loss"], num_ids, num_clothes).to(device)
        self.meta = {"num_ids": num_ids, "num_clothes": num_clothes}
        if device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.augment = BatchAugment(run_cfg["augment"]).to(device)
        clothes_params = [p for n, p in self.model.named_parameters() if n.startswith("clothes_classifier.")]
        main_params = [p for n, p in self.model.named_parameters() if not n.startswith("clothes_classifier.")]
        self.optimizer = torch.optim.Adam(main_params, lr=tcfg["lr"], weight_decay=tcfg["weight_decay"])
        ccfg = run_cfg["loss"]["clothes"]
        self.clothes_optimizer = (
            torch.optim.Adam(clothes_params, lr=ccfg["lr"], weight_decay=ccfg["weight_decay"])
            if clothes_params else None
        )
        amp = tcfg["amp"] if device.type == "cuda" else "off"
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16")

    def _autocast(self):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _set_lr(self, epoch: int) -> float:
        factor = lr_factor(epoch, self.cfg["train"])
        for group in self.optimizer.param_groups:
            group["lr"] = self.cfg["train"]["lr"] * factor
        if self.clothes_optimizer is not None:
            for group in self.clothes_optimizer.param_groups:
                group["lr"] = self.cfg["loss"]["clothes"]["lr"] * factor
        return self.cfg["train"]["lr"] * factor

    def step(self, rows: np.ndarray, epoch: int) -> dict[str, float]:
        lcfg = self.cfg["loss"]
        index = torch.as_tensor(rows)
        images = self.augment(self.images[index].to(self.device, non_blocking=True))
        if self.device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        pids = self.labels[index].to(self.device)
        clothes = self.clothes[index].to(self.device)
        with self._autocast():
            out = self.model(images)
        features = out["features"].float()
        terms = {"id": losses.cross_entropy_label_smooth(out["logits"].float(), pids, lcfg["id"]["label_smoothing"])}
        if lcfg["triplet"]["weight"] > 0:
            terms["triplet"] = lcfg["triplet"]["weight"] * losses.batch_hard_triplet(features, pids, lcfg["triplet"]["margin"])
        aux_on = "aux_logits" in out and epoch >= lcfg["aux"]["start_epoch"]
        if aux_on and lcfg["aux"]["enabled"]:
            terms["aux"] = lcfg["aux"]["weight"] * losses.cross_entropy_label_smooth(
                out["aux_logits"].float(), pids, lcfg["id"]["label_smoothing"])
        if aux_on and lcfg["distill"]["enabled"]:
            terms["distill"] = lcfg["distill"]["weight"] * losses.distillation_kl(
                out["aux_logits"].float(), out["logits"].float(), lcfg["distill"]["temperature"])
        clothes_on = self.clothes_optimizer is not None and epoch >= lcfg["clothes"]["start_epoch"]
        if clothes_on:
            clothes_loss = losses.cross_entropy_label_smooth(
                self.model.clothes_classifier(features.detach()), clothes, lcfg["clothes"]["label_smoothing"])
            self.clothes_optimizer.zero_grad(set_to_none=True)
            clothes_loss.backward()
            self.clothes_optimizer.step()
            terms_clothes = float(clothes_loss)
            if lcfg["adversarial"]["enabled"]:
                terms["adversarial"] = lcfg["adversarial"]["weight"] * losses.clothes_adversarial_loss(
                    self.model.clothes_classifier(features), clothes,
                    self.positive_mask[pids], lcfg["adversarial"]["epsilon"])
        loss = sum(terms.values())
        if not torch.isfinite(loss):
            raise FloatingPointError({k: float(v) for k, v in terms.items()})
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        logged = {k: float(v) for k, v in terms.items()} | {"total": float(loss)}
        if clothes_on:
            logged["clothes_classifier"] = terms_clothes
        return logged

    def state(self, epoch: int) -> dict:
        return {
            "epoch": epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "clothes_optimizer": self.clothes_optimizer.state_dict() if self.clothes_optimizer else None,
            "scaler": self.scaler.state_dict(),
            "rng": _rng_state(),
            "config": train_section(self.cfg),
        }

    def load_state(self, state: dict) -> int:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.clothes_optimizer is not None:
            self.clothes_optimizer.load_state_dict(state["clothes_optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
        return state["epoch"] + 1


def _load_checkpoint(path: Path, run_cfg: dict) -> dict | None:
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001 — an unreadable checkpoint is reported, not used
        raise CCReIDError(f"{path}: unreadable checkpoint ({error}); delete it to start over") from None
    changed = fingerprint.differences(state.get("config", {}), train_section(run_cfg))
    if changed:
        raise CCReIDError(
            f"{path}: checkpoint comes from a different training config:\n  " + "\n  ".join(changed)
            + "\nDelete it (or its folder) to train from scratch with the new config."
        )
    return state


class _Progress:
    """A tqdm bar on a terminal, periodic plain lines otherwise (CI, SLURM logs)."""

    def __init__(self, total_epochs: int):
        self.total_epochs = total_epochs
        self.interactive = sys.stderr.isatty()

    def epoch(self, epoch: int, batches: int):
        if self.interactive:
            from tqdm import tqdm

            return tqdm(total=batches, desc=f"epoch {epoch + 1}/{self.total_epochs}", leave=False)
        return None

    def done(self, bar, epoch: int, logged: dict, seconds: float, images: int) -> None:
        if bar is not None:
            bar.close()
        terms = " ".join(f"{k}={v:.4f}" for k, v in logged.items())
        print(f"epoch {epoch + 1}/{self.total_epochs} {terms} ({images / max(seconds, 1e-9):.0f} img/s)",
              file=sys.stderr, flush=True)


def train(prepared_dir: Path, run_cfg: dict, model_path: Path, device: str | None = None) -> Path:
    """Train the run's model into `model_path` (+ checkpoint and DVCLive logs in its folder)."""
    from dvclive import Live

    model_path = Path(model_path)
    out_dir = model_path.parent
    # The prepared folder's own fingerprint identifies its content (prepare is deterministic).
    expected = fingerprint.make_fingerprint(
        __name__, train_section(run_cfg), {"prepared": Path(prepared_dir) / "fingerprint.json"})
    if fingerprint.is_fresh(model_path, expected):
        return model_path
    torch.use_deterministic_algorithms(True, warn_only=True)
    trainer = Trainer(Path(prepared_dir), run_cfg, pick_device(device))
    checkpoint_path = out_dir / CHECKPOINT
    start_epoch = 0
    state = _load_checkpoint(checkpoint_path, run_cfg)
    if state is not None:
        start_epoch = trainer.load_state(state)
    epochs = run_cfg["train"]["epochs"]
    progress = _Progress(epochs)
    live = Live(dir=str(out_dir / "live"), resume=start_epoch > 0, save_dvc_exp=False,
                dvcyaml=None, report=None)
    for epoch in range(start_epoch, epochs):
        lr = trainer._set_lr(epoch)
        trainer.model.train()
        batches = trainer.sampler.epoch(epoch)
        bar, started, sums = progress.epoch(epoch, len(batches)), time.perf_counter(), {}
        for number, rows in enumerate(batches):
            try:
                logged = trainer.step(rows, epoch)
            except FloatingPointError as error:
                last = checkpoint_path if checkpoint_path.is_file() else "none yet"
                raise CCReIDError(
                    f"non-finite loss at epoch {epoch + 1}, batch {number + 1}: terms {error.args[0]}; "
                    f"last good checkpoint: {last}. Lower train.lr or check the data."
                ) from None
            for key, value in logged.items():
                live.log_metric(f"train/{key}", value)
                sums[key] = sums.get(key, 0.0) + value
            live.log_metric("train/lr", lr)
            live.next_step()
            if bar is not None:
                bar.update(1)
        means = {k: v / max(len(batches), 1) for k, v in sums.items()}
        progress.done(bar, epoch, means, time.perf_counter() - started, len(batches) * len(batches[0]) if batches else 0)
        with atomic_path(checkpoint_path) as tmp:
            torch.save(trainer.state(epoch), tmp)
    live.end()
    final = {
        "model": trainer.model.state_dict(),
        "config": train_section(run_cfg),
        **trainer.meta,
    }
    with atomic_path(model_path) as tmp:
        torch.save(final, tmp)
    fingerprint.record(model_path, expected)
    return model_path


def load_model(model_path: Path, device: torch.device) -> torch.nn.Module:
    """The trained model in eval mode, built from the config stored with its weights."""
    try:
        saved = torch.load(model_path, map_location="cpu", weights_only=False)
        cfg = saved["config"]
    except Exception as error:  # noqa: BLE001
        raise CCReIDError(f"{model_path}: not a ccreid model file ({error}); re-run `ccreid train`") from None
    model = build_model({**cfg["model"], "pretrained": "none"}, cfg["loss"], saved["num_ids"], saved["num_clothes"])
    model.load_state_dict(saved["model"])
    return model.to(device).eval()


"""Stage `train`: prepared images to ``model.pt`` (+ ``checkpoint.pt``, ``live/``, and
``test_curve.json`` when eval.test_every), through ccreid.engine.trainer.

Several processes: `torchrun --nproc_per_node N -m ccreid train ...` (DDP; see the engine).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch

from ccreid.core import fingerprint
from ccreid.core.atomic import atomic_write_json, exclusive
from ccreid.core.devices import pick_device
from ccreid.core.distributed import World, process_group, world_from_environment
from ccreid.core.paths import CHECKPOINT, FOLDER_RECORD, LIVE_DIR, TEST_CURVE
from ccreid.core.schema import RunConfig
from ccreid.core.sections import train_section
from ccreid.core.stage_code import MONITORS, monitors_on, stage_code
from ccreid.core.weights import pretrained_file
from ccreid.data.prepared import load_prepared
from ccreid.engine.trainer import Trainer, check_training, run_epochs
from ccreid.models.checkpoint import save_model


def train(prepared_dir: Path, run_cfg: RunConfig, model_path: Path, device: str | None = None) -> Path:
    """Train the run's model into `model_path` (+ checkpoint and DVCLive logs in its folder)."""
    model_path = Path(model_path)
    # The prepared folder's own fingerprint identifies its content (prepare is deterministic).
    inputs = {"prepared": Path(prepared_dir) / FOLDER_RECORD}
    weights = pretrained_file(run_cfg.model)
    if weights is not None:
        inputs["weights"] = weights  # other initial weights retrain
    expected = fingerprint.make_fingerprint(__name__, stage_code("train", run_cfg), train_section(run_cfg), inputs)
    world = world_from_environment()
    holder = f".rank{world.rank}" if world.distributed else ""
    companions = (model_path.parent / CHECKPOINT, model_path.parent / TEST_CURVE)
    # A member that breaks its contract stops here: before any data is read or anything written.
    check_training(run_cfg)
    with exclusive(model_path, holder=holder, companions=companions):
        if fingerprint.is_fresh(model_path, expected):
            return model_path
        _train(Path(prepared_dir), run_cfg, model_path, expected, world, device)
    return model_path


def _monitors(data, run_cfg: RunConfig, world: World) -> dict:
    """Validation and test monitors, on rank 0 only; their module is imported only when the run
    monitors, which is when its code is part of this run's code hash (ccreid.core.stage_code)."""
    if not (monitors_on(run_cfg) and world.is_main):
        return {}
    return importlib.import_module(MONITORS).training_monitors(data, run_cfg)


def _train(
    prepared_dir: Path, run_cfg: RunConfig, model_path: Path, expected: dict, world: World, device: str | None
) -> None:
    torch_device = pick_device(device, world.local_rank if world.distributed else None)
    torch.set_num_threads(run_cfg.train.cpu_threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    with process_group(world, torch_device):
        data = load_prepared(prepared_dir)
        trainer = Trainer(data, run_cfg, torch_device, world, _monitors(data, run_cfg, world))
        try:
            test_curve = run_epochs(trainer, run_cfg, model_path.parent / CHECKPOINT, model_path.parent / LIVE_DIR)
        finally:
            trainer.close()
        if world.is_main:
            if run_cfg.eval.test_every:
                atomic_write_json(
                    model_path.parent / TEST_CURVE,
                    {
                        "note": "test protocols evaluated during training (eval.test_every); selecting an "
                        "epoch by them is selection on the test set",
                        "every": run_cfg.eval.test_every,
                        "epochs": test_curve,
                    },
                )
            final = {"model": trainer.model.state_dict(), "config": train_section(run_cfg), **trainer.meta}
            with fingerprint.rebuilding(model_path, expected):
                save_model(final, model_path)
            # Finished: nothing left to resume. Keeping it would refuse the next training of this
            # folder after a config edit, which is the normal way of working.
            (model_path.parent / CHECKPOINT).unlink(missing_ok=True)
        world.barrier()

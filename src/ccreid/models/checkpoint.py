"""model.pt and checkpoint.pt: written atomically, read back without running code.

Both are torch files holding only tensors and plain values (dicts, lists, tuples, strings,
numbers, None), read with ``torch.load(weights_only=True)``. Unpickling a file can call any
function the file names, so a file that asks for anything else — a checkpoint of an older
ccreid (it held NumPy arrays), or a crafted one — is refused before any of it is built. What
is not a tensor travels as plain data: the config as JSON text (``config_json``), NumPy's
generator state as a tensor of its key words.
"""

from __future__ import annotations

import io
import json
import pickle
import re
from pathlib import Path

import numpy as np
import torch
from pydantic import ValidationError

from ccreid.core.atomic import atomic_path
from ccreid.core.errors import CCReIDError
from ccreid.core.registry import Registry, registry
from ccreid.core.schema import LossCfg, ModelCfg
from ccreid.models.reid import build_model

# Bumped when what a file holds changes; files of another format are refused, naming both.
MODEL_FORMAT = 1
CHECKPOINT_FORMAT = 4  # 3: loadable with weights_only (JSON config, NumPy state as a tensor); 4: loss terms' states

RETRAIN = "delete it and re-run `ccreid train`"
# How torch names the callable a refused pickle asked for.
_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")


def _write(state: dict, path: Path) -> None:
    """torch.save, atomically. Serialised in memory first: torch's own file writer reports a full
    disk as "unexpected pos", a Python write names it."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())


def _read(path: Path, what: str, expected_format: int, remedy: str) -> dict:
    """The dict stored in `path`, loaded without running code, with the expected format stamp."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        refused = _UNSUPPORTED_GLOBAL.search(str(error))
        if refused is None:
            raise CCReIDError(f"{path}: unreadable {what} (damaged pickle data); {remedy}") from None
        raise CCReIDError(
            f"{path}: refused: besides tensors and plain values it asks for a Python object "
            f"({refused.group(1)}), and building one can run any code; ccreid loads results without "
            f"running code. It was written by an older ccreid or by something else: {remedy}"
        ) from None
    except Exception as error:  # noqa: BLE001 — truncated, not a torch file, unreadable ...
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CCReIDError(f"{path}: unreadable {what} ({reason}); {remedy}") from None
    found = state.get("format") if isinstance(state, dict) else None
    if found != expected_format:
        raise CCReIDError(
            f"{path}: not a {what} of this ccreid version (format {found}, expected {expected_format}); {remedy}"
        )
    return state


def _config(state: dict, path: Path, what: str, remedy: str) -> dict:
    try:
        config = json.loads(state["config_json"])
    except (KeyError, TypeError, ValueError):
        config = None
    if not isinstance(config, dict):
        raise CCReIDError(f"{path}: {what} without a readable config; {remedy}")
    return config


# ------------------------------------------------------------------ the trained model
def save_model(state: dict, path: Path) -> None:
    """model.pt from {"model": state_dict, "config": train section, "num_ids", "num_clothes"}."""
    plain = {key: value for key, value in state.items() if key != "config"}
    _write({**plain, "format": MODEL_FORMAT, "config_json": json.dumps(state["config"], sort_keys=True)}, path)


def load_model(
    model_path: Path, device: torch.device, members: Registry | None = None, experiment: str = "?"
) -> torch.nn.Module:
    """The trained model in eval mode, built from the config stored with its weights (its members
    from `members`, default ccreid's own; errors name `experiment`)."""
    saved = _read(model_path, "ccreid model file", MODEL_FORMAT, RETRAIN)
    cfg = _config(saved, model_path, "model file", RETRAIN)
    try:
        model = build_model(
            ModelCfg.model_validate({**cfg["model"], "pretrained": "none"}),
            LossCfg.model_validate(cfg["loss"]),
            saved["num_ids"],
            saved["num_clothes"],
            members or registry(),
            experiment,
        )
    except (KeyError, ValidationError) as error:
        reason = f"its config lacks {error}" if isinstance(error, KeyError) else "its config is not this version's"
        raise CCReIDError(f"{model_path}: {reason}; {RETRAIN}") from None
    try:
        model.load_state_dict(saved["model"])
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CCReIDError(
            f"{model_path}: its weights do not fit the model its config describes ({reason}); {RETRAIN}"
        ) from None
    return model.to(device).eval()


# ------------------------------------------------------------------ the training state
def _plain_numpy_state(state: tuple) -> dict:
    """np.random.get_state() without its ndarray (which weights_only loading refuses)."""
    name, keys, position, has_gauss, cached_gaussian = state
    return {
        "name": name,
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "position": int(position),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached_gaussian),
    }


def _numpy_state(plain: dict) -> tuple:
    keys = plain["keys"].numpy().astype(np.uint32)
    return plain["name"], keys, plain["position"], plain["has_gauss"], plain["cached_gaussian"]


def save_training_state(state: dict, path: Path) -> None:
    """checkpoint.pt from the trainer's state (stamped with CHECKPOINT_FORMAT by the trainer),
    its "config" and per-rank "rng" made plain."""
    plain = {key: value for key, value in state.items() if key != "config"}
    plain["config_json"] = json.dumps(state["config"], sort_keys=True)
    plain["rng"] = [{**rank, "numpy": _plain_numpy_state(rank["numpy"])} for rank in state["rng"]]
    _write(plain, path)


def load_training_state(path: Path) -> dict:
    """The trainer's state as save_training_state got it (config and RNG states rebuilt)."""
    remedy = "delete it to train from scratch"
    state = _read(path, "ccreid checkpoint", CHECKPOINT_FORMAT, remedy)
    state["config"] = _config(state, path, "checkpoint", remedy)
    try:
        state["rng"] = [{**rank, "numpy": _numpy_state(rank["numpy"])} for rank in state["rng"]]
    except (KeyError, TypeError, AttributeError):
        raise CCReIDError(f"{path}: checkpoint without readable random-generator states; {remedy}") from None
    return state

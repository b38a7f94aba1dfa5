"""Initial weights of a backbone from a file (`model.pretrained`: the published ImageNet file or a
local path): read without running code, every key checked, each problem named."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ccreid.core.errors import CCReIDError
from ccreid.core.weights import require_weights

# Keys of the published files that the backbone does not have: the ImageNet classifier (and,
# for OSNet, its 512-d fc embedding layer, which our re-id head replaces).
CLASSIFIER_PREFIXES = ("fc.", "classifier.")

# Keys under which training scripts commonly nest the state_dict (CAL saves "model_state_dict").
NESTING_KEYS = ("state_dict", "model", "model_state_dict")

MAX_NAMES_IN_MESSAGE = 10


def load_pretrained(backbone: nn.Module, name: str, pretrained: str) -> None:
    """`pretrained`: "none", "imagenet" (the published file of backbone `name` under data/weights/,
    see ccreid.core.weights) or the path of a local weight file (only width 1.0 fits them)."""
    if pretrained == "imagenet":
        load_weight_file(backbone, require_weights(name))
    elif pretrained != "none":
        load_weight_file(backbone, pretrained)


def load_weight_file(backbone: nn.Module, path: str | Path) -> None:
    """Load a local checkpoint into `backbone`: a plain state_dict or one nested under
    "state_dict" / "model" / "model_state_dict", optionally saved from DataParallel ("module.")."""
    path = Path(path)
    if not path.is_file():
        raise CCReIDError(f"model.pretrained: no weight file at {path} (expected 'none', 'imagenet' or a file path)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # corrupt file, pickle with arbitrary objects, not a torch file ...
        raise CCReIDError(f"model.pretrained: cannot read weights from {path}: {error}") from error
    for key in NESTING_KEYS:
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    if not isinstance(checkpoint, dict):
        kind = type(checkpoint).__name__
        raise CCReIDError(f"model.pretrained: {path} holds a {kind}, not a state_dict")
    state_dict = {key.removeprefix("module."): value for key, value in checkpoint.items()}
    load_state_dict_checked(backbone, state_dict, str(path))


def load_state_dict_checked(backbone: nn.Module, state_dict: dict, source: str) -> None:
    """Load every backbone weight from `state_dict` or raise an error naming each bad key.

    Classifier keys are ignored. BatchNorm's `num_batches_tracked` counters may be absent
    (files saved by old PyTorch): they do not affect outputs.
    """
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith(CLASSIFIER_PREFIXES)}
    expected = backbone.state_dict()
    missing = [k for k in expected if k not in state_dict and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k} (file {tuple(v.shape)}, model {tuple(expected[k].shape)})"
        for k, v in state_dict.items()
        if k in expected and isinstance(v, torch.Tensor) and v.shape != expected[k].shape
    ]
    problems = [
        f"{label} ({len(keys)}): {_first_names(keys)}"
        for label, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", mismatched),
        )
        if keys
    ]
    if problems:
        raise CCReIDError(
            f"model.pretrained: {source} does not fit backbone {type(backbone).__name__}: " + "; ".join(problems)
        )
    backbone.load_state_dict(state_dict, strict=False)


def _first_names(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_NAMES_IN_MESSAGE])
    return shown + (" ..." if len(keys) > MAX_NAMES_IN_MESSAGE else "")

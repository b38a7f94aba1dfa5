"""Where each stage's output lives — the file contracts of docs/architecture.md, in one place."""

from __future__ import annotations

from pathlib import Path


def prepared_dir(dataset: str) -> Path:
    return Path("data/prepared") / dataset


def run_dir(dataset: str, exp: str) -> Path:
    return Path("results") / dataset / exp


def model_path(dataset: str, owner: str) -> Path:
    """Trained weights live with the experiment that owns the training config (see
    Params.model_owner): evaluation-only variants point here instead of training again."""
    return run_dir(dataset, owner) / "model.pt"


TEST_CURVE = "test_curve.json"  # beside model.pt: the test protocols during training (eval.test_every)


def features_path(dataset: str, exp: str) -> Path:
    return run_dir(dataset, exp) / "features.h5"


def metrics_path(dataset: str, exp: str) -> Path:
    return run_dir(dataset, exp) / "metrics.json"

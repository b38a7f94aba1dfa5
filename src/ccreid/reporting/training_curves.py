"""Training curves of one run from the DVCLive history training writes (ccreid.engine.training_log:
``live/plots/metrics/{train,epoch,val,test}/…/*.tsv``): the loss terms and the learning rate
per step and, when the run monitored (train.val_every, eval.test_every), the metrics per epoch."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ccreid.core.errors import CCReIDError

METRICS_DIR = Path("plots") / "metrics"  # inside live/, as DVCLive lays it out


def _series(path: Path) -> pd.Series:
    """One DVCLive file: its value column indexed by step."""
    try:
        table = pd.read_csv(path, sep="\t")
        return table.set_index("step")[table.columns[-1]].astype(float)
    except (OSError, ValueError, KeyError, IndexError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise CCReIDError(f"{path}: not a DVCLive history file ({error}); re-run `ccreid train`") from None


def read_history(live_dir: Path) -> dict[str, dict[str, pd.Series]]:
    """Per group (train, epoch, val, test) the series by name (``cc/mAP`` for nested files)."""
    root = Path(live_dir) / METRICS_DIR
    history: dict[str, dict[str, pd.Series]] = {}
    for path in sorted(root.rglob("*.tsv")):
        group, *rest = path.relative_to(root).with_suffix("").parts
        if rest:
            history.setdefault(group, {})["/".join(rest)] = _series(path)
    return history


def has_history(live_dir: Path) -> bool:
    return any((Path(live_dir) / METRICS_DIR / "train").glob("*.tsv"))


def curves_figure(exp: str, history: dict[str, dict[str, pd.Series]]) -> Figure:
    """Loss terms and learning rate over steps; monitored metrics over epochs when there are any."""
    train = history.get("train", {})
    epochs = history.get("epoch", {}).get("epoch")
    monitored = {
        f"{group} {name}": series for group in ("val", "test") for name, series in history.get(group, {}).items()
    }
    panels = 3 if monitored else 2
    figure = Figure(figsize=(5 * panels, 4), layout="constrained")
    losses, rate = figure.add_subplot(1, panels, 1), figure.add_subplot(1, panels, 2)
    for name, series in train.items():
        if name != "lr":
            losses.plot(series.index, series.to_numpy(), label=name, marker="." if len(series) < 50 else None)
    losses.set(title=f"{exp}: loss terms per step", xlabel="step", ylabel="loss")
    losses.grid(alpha=0.3)
    if len(losses.lines):
        losses.legend(fontsize=8)
    if "lr" in train:
        rate.plot(
            train["lr"].index, train["lr"].to_numpy(), color="black", marker="." if len(train["lr"]) < 50 else None
        )
        rate.set_yscale("log")
    rate.set(title=f"{exp}: learning rate per step", xlabel="step", ylabel="learning rate")
    rate.grid(alpha=0.3)
    if monitored:
        metrics = figure.add_subplot(1, panels, 3)
        for label, series in monitored.items():
            # Logged on each epoch's last step; epoch/epoch maps that step to the epoch (1-based).
            x = epochs.reindex(series.index).to_numpy() if epochs is not None else series.index.to_numpy()
            metrics.plot(x, 100 * series.to_numpy(), marker="o", markersize=3, label=label)
        metrics.set(title=f"{exp}: monitored metrics per epoch", xlabel="epoch", ylabel="%")
        metrics.grid(alpha=0.3)
        metrics.legend(fontsize=8)
    for axes in figure.axes:  # steps and epochs are whole numbers
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    return figure


def curves_png(exp: str, live_dir: Path) -> bytes:
    buffer = io.BytesIO()  # no "Software" entry (the matplotlib version): same history, same bytes
    curves_figure(exp, read_history(live_dir)).savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()

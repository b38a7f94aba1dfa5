"""Training curves from a DVCLive history written by training's own log (ccreid.engine.training_log)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from ccreid.core.errors import CCReIDError
from ccreid.engine.training_log import TrainingLog
from ccreid.reporting.training_curves import curves_png, has_history, read_history


def write_history(live_dir, epochs: int, batches: int, monitored: bool) -> None:
    log = TrainingLog(live_dir, epochs, None, enabled=True)
    for epoch in range(epochs):
        log.start_epoch(epoch, batches)
        for b in range(batches):
            step = epoch * batches + b
            log.batch({"id": 5.0 - 0.1 * step, "total": 6.0 - 0.1 * step}, lr=1e-3 * 0.5**epoch)
        test = {"cc/mAP": 0.1 * (epoch + 1), "cc/R1": 0.2} if monitored else {}
        log.end_epoch(images=64, validation={}, test=test)
    log.close()


def test_history_is_read_per_step_and_per_epoch(tmp_path):
    write_history(tmp_path / "live", epochs=3, batches=4, monitored=True)
    history = read_history(tmp_path / "live")
    assert has_history(tmp_path / "live")
    assert sorted(history["train"]) == ["id", "lr", "total"]
    assert list(history["train"]["id"].index) == list(range(12))
    assert history["train"]["id"].iloc[5] == pytest.approx(4.5)
    assert history["train"]["lr"].iloc[4] == pytest.approx(5e-4)
    # Per epoch: logged on each epoch's last step, which epoch/epoch maps to the epoch.
    assert list(history["epoch"]["epoch"].to_numpy()) == [1, 2, 3]
    assert list(history["test"]["cc/mAP"].index) == list(history["epoch"]["epoch"].index)
    assert np.allclose(history["test"]["cc/mAP"].to_numpy(), [0.1, 0.2, 0.3])


def test_a_monitored_run_gets_a_third_panel_and_same_history_same_bytes(tmp_path):
    write_history(tmp_path / "plain", epochs=2, batches=3, monitored=False)
    write_history(tmp_path / "monitored", epochs=2, batches=3, monitored=True)
    plain, monitored = curves_png("212", tmp_path / "plain"), curves_png("213", tmp_path / "monitored")
    width = Image.open(io.BytesIO(plain)).size[0]
    assert Image.open(io.BytesIO(monitored)).size[0] == pytest.approx(1.5 * width, rel=0.02)
    assert curves_png("212", tmp_path / "plain") == plain


def test_no_history_and_a_damaged_file(tmp_path):
    assert not has_history(tmp_path / "nothing")
    write_history(tmp_path / "live", epochs=1, batches=2, monitored=False)
    (tmp_path / "live/plots/metrics/train/id.tsv").write_text("garbage without columns\n")
    with pytest.raises(CCReIDError, match="id.tsv"):
        read_history(tmp_path / "live")

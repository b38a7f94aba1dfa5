"""benchmarks/gpu_check.py, the device check a GPU machine runs, dry-run on the CPU so it cannot
rot between GPU sessions: every section runs and lands in the JSON and the markdown table."""

from __future__ import annotations

import json
import sys

import pytest

from helpers import REPO, run

pytestmark = pytest.mark.slow


def test_the_device_check_dry_runs_every_section_on_the_cpu(tmp_path):
    out = tmp_path / "check"
    command = [sys.executable, "gpu_check.py", "--device", "cpu", "--quick", "--skip-tests", "--out", str(out)]
    run(command, cwd=REPO / "benchmarks", timeout=900)
    report = json.loads((out / "gpu_check.json").read_text())
    for mode in ("fp32", "bf16_channels_last"):
        assert report["training"][mode]["images_per_second"] > 0
        assert 0 <= report["training"][mode]["input_wait_share"] < 1
    assert report["cal_style"]["images_per_second"] > 0
    assert report["evaluation"]["same_numbers"] is True
    assert report["extraction"]["bf16"]["images_per_second"] > 0
    assert report["two_gpus"] is None  # one device here: the torchrun section says so
    assert report["augmentation"]["ccreid"] > 0 and report["augmentation"]["kornia"] > 0
    table = (out / "gpu_check.md").read_text()
    assert "ccreid bf16 / CAL-style fp32" in table and "not run: fewer than 2 GPUs" in table
    assert "augmentation of a 8-image batch: ccreid / Kornia's chain, ms" in table

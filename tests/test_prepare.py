"""The prepared store: rebuilt exactly when the raw data or the size changes; single-shot evaluation."""

from __future__ import annotations

import json

import h5py
import pytest

from helpers import call, copy_built, edit_params, run


def prepare(project):
    call(["prepare", "--dataset", "synthetic"], cwd=project)
    return (project / "data/prepared/synthetic/images.h5").stat().st_mtime_ns


def test_prepare_reruns_on_raw_data_or_size_only(synthetic):
    first = prepare(synthetic)
    assert prepare(synthetic) == first  # nothing changed: returns at once
    edit_params(synthetic, lambda p: p["datasets"]["synthetic"].update(schedule_scale=0.5))
    assert prepare(synthetic) == first  # training settings are not prepare's business
    edit_params(synthetic, lambda p: p["datasets"]["synthetic"].update(size=[48, 24]))
    resized = prepare(synthetic)
    assert resized != first
    with h5py.File(synthetic / "data/prepared/synthetic/images.h5") as store:
        assert store["images"].shape[2:] == (48, 24)
    image = next((synthetic / "data/raw/synthetic/rgb/train").rglob("*.jpg"))
    other = next((synthetic / "data/raw/synthetic/rgb/test").rglob("*.jpg"))
    image.write_bytes(other.read_bytes())  # raw data changed
    assert prepare(synthetic) != resized
    summary = json.loads((synthetic / "data/prepared/synthetic/summary.json").read_text())
    assert summary["train"]["images"] > 0 and "query_cc" in summary


@pytest.mark.slow
def test_single_shot_protocol_reports_mean_and_spread(built_212, tmp_path):
    prepared = copy_built(built_212, tmp_path / "project")
    edit_params(prepared, lambda p: p["experiments"]["212"].update(eval={"single_shot": True}))
    run(["snakemake", "--cores", "2", "results/synthetic/212/metrics.json"], cwd=prepared)
    metrics = json.loads((prepared / "results/synthetic/212/metrics.json").read_text())
    assert {"cc", "sc", "cc_single", "sc_single"} <= set(metrics)
    single = metrics["cc_single"]
    assert single["trials"] == 10 and 0.0 <= single["mAP_std"] <= single["mAP"] <= 1.0
    # One gallery image per identity: single-shot mAP is a mean over draws, not the multi-shot one.
    assert single["mAP"] != metrics["cc"]["mAP"]
    cmc = (prepared / "results/synthetic/212/cmc.csv").read_text().splitlines()
    assert cmc[0] == "rank,cc,sc" and len(cmc) == 21


def test_check_parses_and_validates_without_writing(synthetic):
    result = call(["prepare", "--check", "--dataset", "synthetic"], cwd=synthetic)
    assert "query_cc" in result.stdout and "outfits" in result.stdout
    assert not (synthetic / "data/prepared").exists()

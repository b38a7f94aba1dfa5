"""Bad input: one clear message naming the file or key, a non-zero exit, no output left behind."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from conftest import run


def ccreid(project, *args, check=False):
    return run(["ccreid", *args], cwd=project, check=check)


def leftovers(folder):
    return [p for p in folder.rglob(".tmp-*")] if folder.exists() else []


@pytest.fixture
def synthetic(project):
    ccreid(project, "synth", "--dataset", "synthetic", check=True)
    return project


def test_missing_dataset(project):
    result = ccreid(project, "prepare", "--dataset", "prcc")
    assert result.returncode == 2
    assert "data/raw/prcc not found" in result.stderr and "Traceback" not in result.stderr
    assert not (project / "data/prepared/prcc").exists()


def test_undecodable_image_stops_and_leaves_nothing(synthetic):
    bad = next((synthetic / "data/raw/synthetic/rgb/test/C").rglob("*.jpg"))
    bad.write_bytes(b"not a jpeg at all")
    result = ccreid(synthetic, "prepare", "--dataset", "synthetic")
    assert result.returncode == 2
    assert str(bad.relative_to(synthetic)) in result.stderr and "on_bad_image: skip" in result.stderr
    assert not (synthetic / "data/prepared/synthetic").exists()
    assert leftovers(synthetic / "data/prepared") == []


def test_undecodable_image_can_be_skipped_and_recorded(synthetic):
    bad = next((synthetic / "data/raw/synthetic/rgb/train").rglob("*.jpg"))
    bad.write_bytes(bad.read_bytes()[:40])  # truncated
    params = yaml.safe_load((synthetic / "params.yaml").read_text())
    params["datasets"]["synthetic"]["on_bad_image"] = "skip"
    (synthetic / "params.yaml").write_text(yaml.safe_dump(params))
    ccreid(synthetic, "prepare", "--dataset", "synthetic", check=True)
    skipped = json.loads((synthetic / "data/prepared/synthetic/skipped.json").read_text())
    assert len(skipped) == 1 and str(bad.relative_to(synthetic)) in skipped[0]


def test_empty_split(synthetic):
    for folder in (synthetic / "data/raw/synthetic/rgb/test/C").iterdir():
        shutil.rmtree(folder)
    result = ccreid(synthetic, "prepare", "--dataset", "synthetic")
    assert result.returncode == 2 and "query_cc" in result.stderr
    assert not (synthetic / "data/prepared/synthetic").exists()


def test_unknown_experiment(project):
    result = ccreid(project, "train", "--dataset", "synthetic", "--exp", "999")
    assert result.returncode == 2 and "unknown experiment '999'" in result.stderr
    assert not (project / "results").exists()


def test_bad_params_key_names_experiment_and_key(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["experiments"]["214"]["model"]["multiscale"]["enabeld"] = True
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    result = ccreid(project, "config", "show", "214")
    assert result.returncode == 2
    assert "experiment '214': unknown key 'model.multiscale.enabeld'" in result.stderr


def test_foreign_features_file(project):
    foreign = project / "features.h5"
    foreign.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)  # HDF5 magic, truncated body
    result = ccreid(project, "evaluate", "--dataset", "synthetic", "--exp", "212",
                    "--features", str(foreign), "--out", str(project / "m.json"))
    assert result.returncode == 2 and "features.h5" in result.stderr
    assert not (project / "m.json").exists()

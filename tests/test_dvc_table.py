"""DVC's runs table (dvc_runs.yaml), which dvc.yaml iterates over: what params.yaml puts in it, the
check that it is up to date, and the config stage's refusals. In-process, no DVC run (tests/test_dvc.py
runs DVC)."""

from __future__ import annotations

import json

import pytest
import yaml

from ccreid.core.config import Params, load_params
from ccreid.core.errors import CCReIDError
from ccreid.dvc_pipeline import CONFIG_DIR, TABLE, check_table, runs_table, sync, table_text, write_stage_configs
from helpers import REPO, tiny_params


def test_the_committed_table_is_params_yaml_s(monkeypatch):
    """dvc_runs.yaml is generated: editing params.yaml without `ccreid dvc sync` fails here."""
    monkeypatch.chdir(REPO)
    assert (REPO / TABLE).read_text() == table_text(load_params(REPO / "params.yaml")), (
        "dvc_runs.yaml is out of date with params.yaml: run `ccreid dvc sync` and commit it"
    )


def test_the_table_follows_registry_seeds_owners_and_weights(tmp_path, monkeypatch):
    """Every registered entry is a DVC stage, whatever the tables (which say what Snakemake builds
    together, not what DVC may record)."""
    monkeypatch.chdir(tmp_path)
    raw = tiny_params()
    raw["tables"] = {"demo": ["212", "214"]}
    raw["datasets"]["synthetic"]["seeds"] = {"212": [1, 2]}
    raw["experiments"]["215"]["eval"] = {"test_every": 1}
    raw["datasets"]["synthetic"]["overrides"]["model"]["pretrained"] = "imagenet"  # the ImageNet file
    table = runs_table(Params(raw))["dvc_runs"]
    # Real data sets join only once DVC tracks their raw data (here none is on disk).
    assert set(table["prepare"]) == set(table["synth"]) == {"synthetic"}
    runs = table["runs"]
    assert set(runs) == {f"synthetic-{exp}" for exp in raw["experiments"]} | {"synthetic-212-seed2"}
    assert runs["synthetic-212-seed2"] == {"dataset": "synthetic", "run": "212@2", "owner": "212@2"}
    assert runs["synthetic-210"]["owner"] == "209" and "synthetic-210" not in table["train"]  # evaluation only
    assert "synthetic-215" in table["train_tested"] and "synthetic-215" not in table["train"]
    assert set(table["weights"]) == {"resnet50", "resnet50_ibn_a"}  # 211's backbone
    assert table["weights"]["resnet50"] == {
        "file": "data/weights/resnet50-0676ba61.pth",
        "benchmark": "logs/weights/resnet50-0676ba61.pth.benchmark.tsv",
    }
    assert table["train"]["synthetic-212"]["init"] == table["weights"]["resnet50"]["file"]
    # DVC reads YAML 1.2: every id must stay a string (an unquoted 212 is a number there).
    text = table_text(Params(raw))
    assert '"run": "212"' in text and yaml.safe_load(text) == runs_table(Params(raw))


def test_a_data_set_joins_when_dvc_tracks_its_raw_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data/raw").mkdir(parents=True)
    (tmp_path / "data/raw/prcc.dvc").write_text("outs:\n- path: prcc\n")
    table = runs_table(Params(tiny_params()))["dvc_runs"]
    assert set(table["prepare"]) == {"synthetic", "prcc"} and set(table["synth"]) == {"synthetic"}
    assert table["runs"]["prcc-214"] == {"dataset": "prcc", "run": "214", "owner": "214"}


def test_a_stale_table_names_the_change_and_the_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = tiny_params()
    params = Params(raw)
    assert sync(params) and check_table(params)  # written; then current
    raw["experiments"]["219"] = {"base": "212", "note": "a new entry"}
    with pytest.raises(CCReIDError, match=r"dvc_runs.yaml is out of date .*\+synthetic-219.*`ccreid dvc sync`"):
        check_table(Params(raw))
    with pytest.raises(CCReIDError, match="out of date"):
        write_stage_configs(Params(raw))  # DVC's config stage refuses it too
    assert sync(Params(raw)) == ["+synthetic-219"]


def test_the_config_stage_writes_each_stage_s_config_and_refuses_an_unknown_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = tiny_params()
    sync(Params(raw))
    write_stage_configs(Params(raw))
    folder = tmp_path / CONFIG_DIR / "synthetic"
    train = json.loads((folder / "212/train.json").read_text())
    assert set(train) == {"config", "code"} and train["config"]["train"]["epochs"] == 2
    assert json.loads((folder / "212/init.json").read_text()) == {"pretrained": "none"}
    assert (folder / "210/evaluate.json").is_file() and not (folder / "210/train.json").exists()  # 209 trains it
    raw["run"]["exp"] = "299"
    with pytest.raises(CCReIDError, match="unknown experiment '299'"):
        write_stage_configs(Params(raw))
    raw["run"] = {"dataset": "prcc", "exp": "212"}
    with pytest.raises(CCReIDError, match=r"DVC does not have prcc's raw data \(`dvc add data/raw/prcc`"):
        write_stage_configs(Params(raw))


def test_two_runs_naming_one_stage_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = tiny_params()
    raw["datasets"]["synthetic"]["seeds"] = {"212": [1, 2]}
    raw["experiments"]["212-seed2"] = {"base": "212"}
    with pytest.raises(CCReIDError, match="'212@2' and '212-seed2'|'212-seed2' and '212@2'"):
        runs_table(Params(raw))

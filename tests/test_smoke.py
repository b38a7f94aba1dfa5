"""`ccreid smoke`: any entry end to end in seconds — a few batches of its last epoch with every loss
term on, then a few identities embedded and scored — written apart from the results."""

from __future__ import annotations

import json

import pytest

from helpers import call, run, tiny_params


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, synthetic_project):
    return synthetic_project(tmp_path_factory.mktemp("smoke") / "project", tiny_params())


def test_a_smoke_run_exercises_every_term_and_stays_apart_from_results(prepared):
    out = run(["ccreid", "smoke", "--dataset", "synthetic", "--exp", "216", "--batches", "2"], cwd=prepared).stdout
    assert out.startswith("SMOKE RUN of 216 on synthetic") and "not a result" in out
    record = json.loads((prepared / "smoke/synthetic/216/smoke.json").read_text())
    assert record["smoke"] is True and record["experiment"] == "216" and len(record["losses"]) == 2
    # the last epoch: the auxiliary head, distillation and CAL's clothes terms are all on
    assert set(record["losses"][0]) == {"id", "aux", "distill", "adversarial", "total", "clothes_classifier"}
    assert {"cc", "sc"} <= set(record["metrics"])
    assert not (prepared / "results").exists()  # nothing a table, a report or DVC reads


def test_a_smoke_run_of_an_unprepared_data_set_says_how_to_prepare_it(prepared):
    failed = call(
        ["smoke", "--dataset", "prcc", "--exp", "212"], cwd=prepared, check=False
    )  # refused before any data is read
    assert failed.returncode == 2
    assert (
        "data set 'prcc' is not prepared; build it first with `snakemake --cores all data/prepared/prcc`"
        in failed.stderr
    )

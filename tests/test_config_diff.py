"""What changed: the resolved config difference between experiments (`ccreid config diff`), and
the report's link from each row to it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ccreid.core.config import load_params
from ccreid.reporting.config_diff import change_lines, changes, experiment_changes
from ccreid.stages.report import report
from helpers import call, edit_params, run, tiny_params, write_project
from test_report import write_result


@pytest.fixture
def chained(tmp_path) -> Path:
    """212 → 900 (lr ×2, 100 epochs) → 901 (lr back to 212's, gem pooling): inheritance at work."""
    root = write_project(tmp_path / "project", tiny_params())

    def add(params):
        lr = params["defaults"]["train"]["lr"]
        params["experiments"]["900"] = {"base": "212", "note": "x", "train": {"lr": 2 * lr, "epochs": 100}}
        params["experiments"]["901"] = {"base": "900", "note": "y", "train": {"lr": lr}, "model": {"pooling": "gem"}}

    edit_params(root, add)
    return root


def config(project: Path, *args: str) -> str:
    """`ccreid config args` in this process (it reads params.yaml only): what it prints."""
    result = call(["config", *args], cwd=project, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def diff(project: Path, *args: str) -> list[str]:
    return config(project, "diff", *args).splitlines()


def test_diff_is_of_the_resolved_configs(chained):
    params = load_params(chained / "params.yaml")
    lr, pooling = params.resolve("212").train.lr, params.resolve("212").model.pooling
    assert diff(chained, "212", "900") == ["train.epochs: 60 → 100", f"train.lr: {lr!r} → {2 * lr!r}"]
    # 901 sets lr back: against 212 only what it inherits from 900 and its own pooling remain.
    assert diff(chained, "212", "901") == [f"model.pooling: {pooling!r} → 'gem'", "train.epochs: 60 → 100"]
    assert diff(chained, "900", "901") == [f"model.pooling: {pooling!r} → 'gem'", f"train.lr: {2 * lr!r} → {lr!r}"]
    assert diff(chained, "901", "901") == ["901 and 901: no difference in the resolved config"]


def test_diff_on_a_data_set_applies_its_overrides_and_scale(chained):
    params = load_params(chained / "params.yaml")
    old, new = params.run_config("synthetic", "212").train, params.run_config("synthetic", "900").train
    assert old.epochs != 60 and new.epochs != 100  # scaled by the tiny schedule
    lines = diff(chained, "212", "900", "--dataset", "synthetic")
    assert f"train.epochs: {old.epochs} → {new.epochs}" in lines
    assert "train.epochs: 60 → 100" not in lines


def test_config_list_keeps_its_columns_for_long_ids(chained):
    """`ccreid config list`: ids longer than the lab log's three digits (212ep24ce), also as a
    base, do not shift the columns after them: each column ends (id, base) or starts (reported)
    where the header's does."""
    edit_params(
        chained,
        lambda p: p["experiments"].update(
            {"900longid": {"base": "901", "note": "z"}, "902": {"base": "900longid", "note": "w"}}
        ),
    )
    lines = config(chained, "list").splitlines()
    lines = lines[: lines.index("")]  # the table; the tables' summary follows it
    columns = {(m.end(1), m.end(2), m.end()) for m in (re.match(r"\s*(\S+)\s+(\S+)\s+", line) for line in lines)}
    assert len(columns) == 1, "\n".join(lines)
    assert any(line.split()[:2] == ["902", "900longid"] for line in lines)


def test_entries_that_train_the_same_model_are_named(chained):
    """220 = 213 with distillation ×10 and clothes-smoothed CE is 216 again (×10 is the default):
    `config list` and `config show` say so, as for the evaluation-only variants (210 → 209)."""
    edit_params(
        chained,
        lambda p: p["experiments"].update(
            {
                "220": {
                    "base": "213",
                    "note": "z",
                    "loss": {"distill": {"enabled": True}, "clothes": {"label_smoothing": 0.1}},
                }
            }
        ),
    )
    listing = config(chained, "list")
    assert re.search(r"^\s+220\s+213 .* z \[trains the same model as 216 \(on synthetic\)\]$", listing, re.M), listing
    assert re.search(r"^\s+210\s+209 .*\[trains the same model as 209 \(on synthetic\)\]$", listing, re.M), listing
    assert "in no table (a target or a table away): 900, 901, 220" in listing
    shown = config(chained, "show", "220")
    assert shown.startswith("# 220 trains the same model as 216 (on synthetic)\n")
    assert not config(chained, "show", "216").startswith("#")


def test_unknown_experiment_is_one_clear_error(chained):
    """In a process of its own (`python -m ccreid`): the others call the CLI in this one."""
    failed = run(["python", "-m", "ccreid", "config", "diff", "212", "999"], cwd=chained, check=False)
    assert failed.returncode == 2 and "999" in failed.stderr and "Traceback" not in failed.stderr


def test_changes_of_nested_and_one_sided_keys():
    found = changes({"a": {"b": 1, "c": [1, 2]}, "d": 0}, {"a": {"b": 1, "c": [1, 3], "e": True}, "d": 0})
    assert found == [("a.c", [1, 2], [1, 3]), ("a.e", None, True)]
    assert change_lines(found) == ["a.c: [1, 2] → [1, 3]", "a.e: (unset) → True"]


def test_each_report_row_links_to_its_config_difference(tmp_path):
    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    results = tmp_path / "synthetic"
    for exp, gain in (("212", 0.0), ("213", 0.1)):
        write_result(results / exp, 0, gain)
    report("synthetic", params, results, tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    page = (tmp_path / "out" / "report.html").read_text()
    for exp in params.experiments:
        base = params.entry(exp).get("base")
        if base is None:
            assert f"(#config-{exp})" not in md
            continue
        expected = change_lines(experiment_changes(params, str(base), exp, "synthetic"))
        assert expected, exp  # every registered experiment changes something
        row = next(line for line in md.splitlines() if line.startswith(f"| {exp} |"))
        assert row.rstrip(" |").endswith(f"[{len(expected)} key(s)](#config-{exp})")
        section = md.split(f'<a id="config-{exp}"></a>{exp} vs {base}\n')[1].split("\n###")[0]
        assert [line[2:] for line in section.strip().splitlines()] == expected
        assert f'<a href="#config-{exp}">{len(expected)} key(s)</a>' in page
        assert f'<h3 id="config-{exp}">' in page

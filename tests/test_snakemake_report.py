"""`snakemake --report` after a real run of a tiny registry: the ablation tables, every plot, the
ranked lists and the training curves, each with its caption, by data set and table; each job's
run time; and the report's benchmark file triggers no rerun."""

from __future__ import annotations

import html
import re
import zipfile

import pytest

from conftest import REPO, run, tiny_params, write_project

EXPERIMENTS = ("212", "213", "214")  # 214 is based on 213, 213 on 212


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    params = tiny_params()
    params["experiments"] = {key: params["experiments"][key] for key in EXPERIMENTS}
    params["experiments"]["213"]["eval"] = {"test_every": 1}  # a metric per epoch in its curves
    project = write_project(tmp_path_factory.mktemp("smkreport") / "project", params)
    run(["snakemake", "--cores", "2"], cwd=project, timeout=1200)
    run(["snakemake", "--cores", "2", "--report", "report.zip"], cwd=project)
    run(["snakemake", "--cores", "2", "--report", "report.html"], cwd=project)
    return project


def test_the_run_wrote_the_figures_and_the_benchmark(built):
    out = built / "results/synthetic"
    ranked = sorted(p.name for p in (out / "ranked").glob("*.png"))
    # The CMC plot's experiments (all three here), each beside its base, per protocol (cc, sc).
    assert ranked == [f"{exp}_{protocol}.png" for exp in EXPERIMENTS for protocol in ("cc", "sc")]
    assert sorted(p.name for p in (out / "curves").glob("*.png")) == [f"{exp}.png" for exp in EXPERIMENTS]
    benchmark = (built / "logs/synthetic/report.benchmark.tsv").read_text().splitlines()
    assert benchmark[0].split("\t")[:3] == ["s", "h:m:s", "max_rss"]
    md = (out / "report.md").read_text()
    assert "[1 key(s)](#config-214)" in md  # model.multiscale.enabled: True → False


def test_the_benchmark_file_triggers_no_rerun(built):
    dry = run(["snakemake", "--cores", "2", "--dry-run"], cwd=built)
    assert "Nothing to be done" in dry.stdout + dry.stderr


def test_the_zip_holds_every_table_plot_ranked_list_and_curve(built):
    with zipfile.ZipFile(built / "report.zip") as archive:
        names = archive.namelist()
        page = archive.read(next(n for n in names if n.endswith("report/report.html"))).decode()
    files = {name.rsplit("/", 1)[-1] for name in names}
    assert {"report.html", "report.csv", "cmc.png", "cc_bars.png"} <= files
    assert {f"{exp}_{p}.png" for exp in EXPERIMENTS for p in ("cc", "sc")} <= files
    assert {f"{exp}.png" for exp in EXPERIMENTS} <= files
    page = html.unescape(page)
    for subcategory in ("ablation table", "plots", "ranked lists", "training curves"):
        assert f"registry: {subcategory}" in page, subcategory


def test_the_html_report_has_categories_captions_and_run_times(built):
    page = html.unescape((built / "report.html").read_text())
    assert "synthetic" in page
    for subcategory in ("ablation table", "plots", "ranked lists", "training curves"):
        assert f"registry: {subcategory}" in page, subcategory
    for caption in sorted((REPO / "workflow/report").glob("*.rst")):
        if caption.name == "workflow.rst":
            continue
        first_words = " ".join(caption.read_text().split()[:2])
        assert first_words in page, caption.name
    # Run times of every rule that ran (Snakemake's statistics panel reads its job metadata).
    for rule in ("synth", "prepare", "train", "extract", "evaluate", "report"):
        assert re.search(rf'"rule":\s*"{rule}"', page), rule

"""`snakemake --report` after a real run of a tiny registry: the ablation tables, every plot, the
ranked lists, the training curves and each job's run time and memory (every rule has a
benchmark file), each with its caption, by data set and table; and the benchmarks trigger no rerun."""

from __future__ import annotations

import csv
import html
import io
import re
import zipfile

import pytest

from ccreid.core.benchmark import read_benchmark
from helpers import REPO, copy_built, only_experiments, run, tiny_params

pytestmark = pytest.mark.slow

EXPERIMENTS = ("212", "213", "214")  # 214 is based on 213, 213 on 212
RUNS = ("212", "212@2", "213", "214")  # 212 with a second seed on this data set (datasets.<ds>.seeds)


@pytest.fixture(scope="module")
def built(tmp_path_factory, built_212):
    params = tiny_params()
    only_experiments(params, {key: params["experiments"][key] for key in EXPERIMENTS})
    params["experiments"]["213"]["eval"] = {"test_every": 1}  # a metric per epoch in its curves
    params["datasets"]["synthetic"]["seeds"] = {"212": [1, 2]}  # a second run of the base, here only
    project = copy_built(built_212, tmp_path_factory.mktemp("smkreport") / "project", params)
    run(["snakemake", "--cores", "2"], cwd=project, timeout=1200)
    run(["snakemake", "--cores", "2", "--report", "report.zip"], cwd=project)
    run(["snakemake", "--cores", "2", "--report", "report.html"], cwd=project)
    run(["snakemake", "--cores", "2", "--report", "table.zip", "demo"], cwd=project)  # a table by name
    return project


def test_every_job_has_its_benchmark_and_the_report_lists_them(built):
    logs = built / "logs/synthetic"
    jobs = [logs / f"{job}.benchmark.tsv" for job in ("synth", "prepare", "report-demo")]
    jobs += [logs / name / f"{stage}.benchmark.tsv" for name in RUNS for stage in ("train", "extract", "evaluate")]
    measured = {path.relative_to(logs).as_posix(): read_benchmark(path) for path in jobs}
    assert all(measured.values()), [name for name, numbers in measured.items() if not numbers]
    for name in RUNS:  # a training takes seconds: Snakemake sampled its memory
        assert measured[f"{name}/train.benchmark.tsv"]["max_rss"] > 100, name  # MiB: torch alone is more
    rows = list(csv.DictReader(io.StringIO((built / "results/synthetic/demo/jobs.csv").read_text())))
    assert [(row["job"], row["run"]) for row in rows] == [("synth", ""), ("prepare", "")] + [
        (stage, name) for name in RUNS for stage in ("train", "extract", "evaluate")
    ]
    for row in rows:
        numbers = measured[f"{row['run']}/{row['job']}.benchmark.tsv".lstrip("/")]
        assert float(row["seconds"]) == pytest.approx(numbers["s"]), row
        assert row["max_rss_mib"] == ("" if numbers["max_rss"] is None else f"{numbers['max_rss']:g}"), row


def test_the_run_wrote_the_figures_and_the_benchmark(built):
    out = built / "results/synthetic/demo"
    ranked = sorted(p.name for p in (out / "ranked").glob("*.png"))
    # The CMC plot's experiments (all three here), each beside its base, per protocol (cc, sc).
    assert ranked == [f"{exp}_{protocol}.png" for exp in EXPERIMENTS for protocol in ("cc", "sc")]
    assert sorted(p.name for p in (out / "curves").glob("*.png")) == [f"{exp}.png" for exp in EXPERIMENTS]
    benchmark = (built / "logs/synthetic/report-demo.benchmark.tsv").read_text().splitlines()
    assert benchmark[0].split("\t")[:3] == ["s", "h:m:s", "max_rss"]
    md = (out / "report.md").read_text()
    assert "[1 key(s)](#config-214)" in md  # model.multiscale.enabled: True → False


def test_the_benchmark_files_trigger_no_rerun(built):
    dry = run(["snakemake", "--cores", "2", "--dry-run"], cwd=built)
    assert "Nothing to be done" in dry.stdout + dry.stderr


@pytest.mark.parametrize("archive", ["report.zip", "table.zip"])
def test_the_zip_holds_every_table_plot_ranked_list_and_curve(built, archive):
    top = archive.removesuffix(".zip")  # Snakemake's archive holds a folder named as the file
    with zipfile.ZipFile(built / archive) as archive:
        names = archive.namelist()
        page = archive.read(next(n for n in names if n.endswith(f"{top}/report.html"))).decode()
    files = {name.rsplit("/", 1)[-1] for name in names}
    assert {"report.html", "report.csv", "cmc.png", "cc_bars.png", "jobs.csv"} <= files
    assert {f"{exp}_{p}.png" for exp in EXPERIMENTS for p in ("cc", "sc")} <= files
    assert {f"{exp}.png" for exp in EXPERIMENTS} <= files
    page = html.unescape(page)
    for subcategory in ("ablation table", "plots", "ranked lists", "training curves", "run time and memory"):
        assert f"demo: {subcategory}" in page, subcategory


def test_the_html_report_has_categories_captions_and_run_times(built):
    page = html.unescape((built / "report.html").read_text())
    assert "synthetic" in page
    for subcategory in ("ablation table", "plots", "ranked lists", "training curves", "run time and memory"):
        assert f"demo: {subcategory}" in page, subcategory
    for caption in sorted((REPO / "workflow/report").glob("*.rst")):
        if caption.name == "workflow.rst":
            continue
        first_words = " ".join(caption.read_text().split()[:2])
        assert first_words in page, caption.name
    # Run times of every rule that ran (Snakemake's statistics panel reads its job metadata).
    for rule in ("synth", "prepare", "train", "extract", "evaluate", "report"):
        assert re.search(rf'"rule":\s*"{rule}"', page), rule


def test_a_report_of_what_was_built_is_one_command(built):
    """After targeted runs, `ccreid report --dataset D` reports every registered experiment that has
    results (what was built), beside the tables' folders."""
    out = run(["ccreid", "report", "--dataset", "synthetic"], cwd=built).stdout
    assert "results/synthetic/report.md" in out
    md = (built / "results/synthetic/report.md").read_text()
    assert all(f"| {exp} " in md for exp in EXPERIMENTS)

"""The report stage on a fake results tree: table contents, differences to base, plots, reruns."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ccreid.core.config import load_params
from ccreid.core.errors import CCReIDError
from ccreid.stages.report import report

PARAMS = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
QUERIES, SKIPPED = 120, 3


def fake_queries(prefix: str, seed: int, gain: float) -> pd.DataFrame:
    """Per-query AP and first-match rank; the same seed with a larger gain is the same queries,
    answered better. The first SKIPPED queries have no valid match."""
    rng = np.random.default_rng(seed)
    ap = np.clip(rng.beta(2, 5, QUERIES) + gain, 0.0, 1.0)
    first_rank = np.where(rng.random(QUERIES) < ap, 0, rng.integers(1, 30, QUERIES))
    ap[:SKIPPED], first_rank[:SKIPPED] = np.nan, -1
    paths = [f"rgb/test/{prefix}/{i:03d}.jpg" for i in range(QUERIES)]
    return pd.DataFrame({"path": paths, "pid": np.arange(QUERIES) // 4, "ap": ap, "first_rank": first_rank})


def metrics_of(queries: pd.DataFrame) -> dict:
    answered = queries[queries["ap"].notna()]
    ranks = answered["first_rank"].to_numpy()
    return {
        "mAP": float(answered["ap"].mean()),
        "mINP": float(answered["ap"].mean()) / 2,
        **{f"R{r}": float((ranks < r).mean()) for r in (1, 5, 10, 20)},
        "queries": len(answered),
        "skipped": len(queries) - len(answered),
    }


def write_result(exp_dir: Path, seed: int, gain: float, protocols=("cc", "sc"), single_shot=False) -> dict:
    """metrics.json and per_query.csv as `ccreid evaluate` writes them."""
    exp_dir.mkdir(parents=True)
    tables, metrics = [], {}
    for offset, protocol in enumerate(protocols):
        queries = fake_queries(protocol.upper(), seed + offset, gain)
        metrics[protocol] = metrics_of(queries)
        tables.append(queries.assign(protocol=protocol)[["protocol", "path", "pid", "ap", "first_rank"]])
    if single_shot:
        metrics["cc_single"] = {
            "mAP": 0.41,
            "mAP_std": 0.02,
            "R1": 0.37,
            "R1_std": 0.03,
            "mINP": 0.2,
            "mINP_std": 0.01,
            "queries": 117,
            "skipped": 3,
            "trials": 10,
        }
    pd.concat(tables).to_csv(exp_dir / "per_query.csv", index=False, float_format="%.8g")
    (exp_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    return metrics


# exp -> (seed, gain): 211 answers exactly as 212, 213 clearly better; 208 (209's base) is not run.
FAKE_RUNS = {"212": (0, 0.0), "211": (0, 0.0), "213": (0, 0.15), "214": (0, 0.14), "215": (0, 0.02), "209": (0, 0.05)}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    results = tmp_path_factory.mktemp("results") / "synthetic"
    metrics = {exp: write_result(results / exp, seed, gain) for exp, (seed, gain) in FAKE_RUNS.items()}
    metrics["218"] = write_result(results / "218", 0, 0.1, single_shot=True)
    out = results / "report"
    returned = report("synthetic", PARAMS, results, out)
    return results, out, metrics, returned


def md_row(out: Path, exp: str) -> list[str]:
    for line in (out / "report.md").read_text().splitlines():
        if line.startswith(f"| {exp} |"):
            return [cell.strip() for cell in line.strip("|").split(" | ")]
    raise AssertionError(f"no row for {exp} in report.md")


def md_column(out: Path, header: str) -> int:
    return md_row(out, "Exp").index(header)


def test_csv_has_every_registered_experiment_with_the_written_numbers(built):
    _, out, metrics, _ = built
    table = pd.read_csv(out / "report.csv", dtype={"exp": str, "base": str})
    assert list(table["exp"]) == PARAMS.experiments
    rows = table.set_index("exp")
    for exp, written in metrics.items():
        assert rows.loc[exp, "status"] == "run"
        for protocol in ("cc", "sc"):
            for metric in ("mAP", "R1"):
                assert rows.loc[exp, f"{protocol}_{metric}"] == pytest.approx(written[protocol][metric], abs=1e-12)
        assert rows.loc[exp, "cc_mAP_low"] < rows.loc[exp, "cc_mAP"] < rows.loc[exp, "cc_mAP_high"]
        assert rows.loc[exp, "cc_queries"] == QUERIES - SKIPPED
    not_run = set(PARAMS.experiments) - set(metrics)
    assert set(rows.index[rows["status"] == "not run"]) == not_run
    assert rows.loc["212", "reported_dataset"] == "prcc"
    assert rows.loc["212", "reported_mAP"] == pytest.approx(0.56711)


def test_difference_to_base_and_its_interval(built):
    results, out, _, returned = built
    rows = {row["exp"]: row for row in returned["rows"]}
    before = pd.read_csv(results / "212" / "per_query.csv").query("protocol == 'cc'").dropna()
    after = pd.read_csv(results / "213" / "per_query.csv").query("protocol == 'cc'").dropna()
    better = rows["213"]
    assert better["delta_cc_mAP"] == pytest.approx(after["ap"].mean() - before["ap"].mean())
    assert 0 < better["delta_cc_mAP_low"] < better["delta_cc_mAP"] < better["delta_cc_mAP_high"]
    assert better["delta_cc_mAP_excludes_0"]
    delta_map = md_column(out, "Δ cc mAP vs base [95% CI]")
    # One seed each: the interval is over queries only, and its mark says so.
    assert md_row(out, "213")[delta_map].endswith("* (queries only)") and better["delta_interval"] == "queries only"
    detectable = md_row(out, "213")[md_column(out, "Δ cc mAP: runs base/exp; detectable at 80% power; seeds for 1 pp")]
    assert detectable.startswith("1/1 runs; ") and detectable.endswith("1 pp: unknown (no seed spread measured)")
    # 211 answers every query as its base 212 does: a zero difference with a zero-width interval.
    assert md_row(out, "211")[delta_map] == "+0.00 [+0.00, +0.00]"
    assert md_row(out, "209")[delta_map] == "base not run"
    assert md_row(out, "212")[delta_map] == ""


def test_markdown_rows_in_percent_with_not_run_reported_and_single_shot(built):
    _, out, metrics, _ = built
    text = (out / "report.md").read_text()
    assert "Data set: synthetic" in text and "not comparable" in text and "cc_single" in text
    row = md_row(out, "212")
    assert row[md_column(out, "cc mAP [95% CI]")].startswith(f"{100 * metrics['212']['cc']['mAP']:.2f} [")
    assert row[md_column(out, "sc R1")] == f"{100 * metrics['212']['sc']['R1']:.2f}"
    assert row[md_column(out, "Reported on")] == "prcc"
    assert row[md_column(out, "Reported mAP")] == "56.71"
    assert row[md_column(out, "Reported R1")] == "55.91"
    assert md_row(out, "196")[md_column(out, "cc mAP [95% CI]")] == "not run"
    assert md_row(out, "218")[md_column(out, "cc_single mAP (mean ± std)")] == "41.00 ± 2.00"


def test_plots_are_pngs_and_the_html_embeds_them(built):
    _, out, _, _ = built
    for name in ("cmc.png", "cc_bars.png"):
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.width > 0 and image.height > 0
    page = (out / "report.html").read_text()
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert [base64.b64decode(data) for data in embedded] == [
        (out / "cmc.png").read_bytes(),
        (out / "cc_bars.png").read_bytes(),
    ]
    assert "<table>" in page and "not run" in page


def test_rerun_gives_identical_bytes(built, tmp_path):
    results, out, _, _ = built
    report("synthetic", PARAMS, results, tmp_path)
    for name in ("report.md", "report.csv", "report.html", "cmc.png", "cc_bars.png"):
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes(), name


def test_cmc_defaults_to_the_baseline_and_the_five_best_others(built):
    assert built[3]["cmc_experiments"] == ["212", "213", "214", "218", "209", "215"]


def test_the_cmc_baseline_is_params_default_baseline(built, tmp_path):
    """Policy lives in params.yaml: another default.baseline is drawn first."""
    import yaml

    from ccreid.core.config import Params

    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    raw["default"]["baseline"] = "215"
    drawn = report("synthetic", Params(raw), built[0], tmp_path)["cmc_experiments"]
    assert drawn == ["215", "213", "214", "218", "209", "212"]


def test_explicit_cmc_experiments_must_have_results(built, tmp_path):
    results, _, _, _ = built
    assert report("synthetic", PARAMS, results, tmp_path, cmc_experiments=["214"])["cmc_experiments"] == ["214"]
    with pytest.raises(CCReIDError, match="'196'"):
        report("synthetic", PARAMS, results, tmp_path, cmc_experiments=["196"])


def test_different_query_sets_name_both_files(tmp_path):
    write_result(tmp_path / "212", 0, 0.0)
    write_result(tmp_path / "211", 0, 0.0)
    per_query = tmp_path / "211" / "per_query.csv"
    table = pd.read_csv(per_query)
    table.loc[5, "path"] = "rgb/test/C/elsewhere.jpg"
    table.to_csv(per_query, index=False)
    with pytest.raises(
        CCReIDError,
        match=r"experiment 212 \(.*212.per_query\.csv\) and run 211 of experiment 211 \(.*211.per_query\.csv\)",
    ):
        report("synthetic", PARAMS, tmp_path, tmp_path / "report")


def three_seeds_of_212(tmp_path: Path):
    """212 with seeds 1–3 written under tmp_path/synthetic, and the params that name them."""
    import yaml

    from ccreid.core.config import Params

    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    raw["experiments"]["212"]["seeds"] = [1, 2, 3]
    results = tmp_path / "synthetic"
    for run, gain in (("212", 0.0), ("212@2", 0.02), ("212@3", -0.01)):
        write_result(results / run, 0, gain)
    return Params(raw), results


@pytest.mark.parametrize(
    "spoil, message",
    [
        # One seed's run evaluated on another test set: not silently one query set narrower.
        (
            lambda t: t.assign(path=t["path"].str.replace("/CC/010.jpg", "/CC/elsewhere.jpg")),
            "hold different 'cc' queries",
        ),
        # A query answered in two runs and NaN in the third (a lost value, or another gallery).
        (lambda t: t.assign(ap=t["ap"].mask(t.index == 10)), "disagree on 'cc' query 'rgb/test/CC/010.jpg'"),
        # An answered query without its first rank.
        (
            lambda t: t.assign(first_rank=t["first_rank"].mask(t.index == 10)),
            "'cc' query 'rgb/test/CC/010.jpg' has an AP but no valid first_rank",
        ),
        (lambda t: pd.concat([t, t.iloc[[10]]]), "query 'rgb/test/CC/010.jpg' appears twice"),
        (
            lambda t: t.assign(ap=t["ap"].astype(str).str.replace("0.", "x.", n=1, regex=False)),
            "column 'ap' holds non-numbers",
        ),
    ],
)
def test_bad_per_query_values_of_one_seed_name_the_experiment_and_the_file(tmp_path, spoil, message):
    params, results = three_seeds_of_212(tmp_path)
    per_query = results / "212@2" / "per_query.csv"
    table = pd.read_csv(per_query)
    spoil(table).to_csv(per_query, index=False)
    with pytest.raises(CCReIDError, match=message) as error:
        report("synthetic", params, results, tmp_path / "out", experiments=["212"])
    assert str(per_query) in str(error.value)
    if "column" not in message and "twice" not in message and "first_rank" not in message:
        assert "run 212@2 of experiment 212" in str(error.value)
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_a_set_of_queries_too_small_for_an_interval_names_the_experiment(tmp_path):
    params, results = three_seeds_of_212(tmp_path)
    for run in ("212", "212@2", "212@3"):  # every cc query but one skipped (no true match)
        per_query = results / run / "per_query.csv"
        table = pd.read_csv(per_query)
        table.loc[(table["protocol"] == "cc") & (table.index > SKIPPED), "ap"] = np.nan
        table.to_csv(per_query, index=False)
    with pytest.raises(
        CCReIDError,
        match=r"experiment 212 \(.*212.per_query.csv, .*212@2.per_query.csv, .*212@3.per_query.csv\): 1 answered queries; an interval needs at least 2",
    ):
        report("synthetic", params, results, tmp_path / "out", experiments=["212"])


def test_data_set_without_cc_reports_its_first_protocol(tmp_path):
    write_result(tmp_path / "212", 0, 0.0, protocols=("standard",))
    returned = report("market", PARAMS, tmp_path, tmp_path / "report")
    assert returned["protocols"] == {"main": "standard", "second": None, "single_shot": []}
    assert "standard mAP [95% CI]" in md_row(tmp_path / "report", "Exp")


def test_no_results_at_all_is_a_user_error(tmp_path):
    with pytest.raises(CCReIDError, match="no experiment has a metrics.json"):
        report("synthetic", PARAMS, tmp_path, tmp_path / "report")


def test_several_seeds_give_mean_and_std(tmp_path):
    import yaml

    from ccreid.core.config import Params

    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    raw["experiments"]["213"]["seeds"] = [1, 2, 3]
    params = Params(raw)
    assert params.runs("213") == ["213", "213@2", "213@3"]
    results = tmp_path / "synthetic"
    written = {
        run: write_result(results / run, seed, gain)
        for run, seed, gain in (("212", 0, 0.0), ("213", 0, 0.15), ("213@2", 5, 0.1), ("213@3", 9, 0.2))
    }
    out = report("synthetic", params, results, tmp_path / "out", experiments=["212", "213"])
    row = next(r for r in out["rows"] if r["exp"] == "213")
    values = [written[run]["cc"]["mAP"] for run in ("213", "213@2", "213@3")]
    assert row["seeds"] == 3
    assert row["cc_mAP_seeds_mean"] == pytest.approx(np.mean(values))
    assert row["cc_mAP_seeds_std"] == pytest.approx(np.std(values, ddof=1))
    assert "cc mAP over seeds (mean ± std)" in (tmp_path / "out/report.md").read_text()
    assert "seeds" not in next(r for r in out["rows"] if r["exp"] == "212")


def test_best_on_test_is_a_labelled_column_beside_the_last_epoch(tmp_path):
    """eval.test_every's curve: the report shows CAL's figure (the epoch of the best cc R1 and its
    mAP) in its own column, and the headline stays the last epoch's metrics.json. 210 shares
    209's model, so it shows 209's curve."""
    for exp in ("212", "209", "210"):
        write_result(tmp_path / exp, 0, 0.0)
    curve = {
        "every": 5,
        "epochs": [
            {"epoch": 5, "cc/mAP": 0.30, "cc/R1": 0.28, "sc/mAP": 0.9, "sc/R1": 0.9},
            {"epoch": 10, "cc/mAP": 0.33, "cc/R1": 0.35, "sc/mAP": 0.9, "sc/R1": 0.9},
            {"epoch": 15, "cc/mAP": 0.34, "cc/R1": 0.35, "sc/mAP": 0.9, "sc/R1": 0.9},
        ],
    }
    (tmp_path / "209" / "test_curve.json").write_text(json.dumps(curve))
    returned = report("synthetic", PARAMS, tmp_path, tmp_path / "report", experiments=["212", "209", "210"])
    rows = {row["exp"]: row for row in returned["rows"]}
    assert rows["209"]["test_best_epoch"] == 10 and rows["209"]["test_best_cc_mAP"] == 0.33  # first best R1
    assert rows["210"]["test_best_epoch"] == 10 and "test_best_epoch" not in rows["212"]
    header = md_row(tmp_path / "report", "Exp")
    column = header.index("best on test (as CAL reports; optimistic): cc mAP / R1 @ epoch")
    assert md_row(tmp_path / "report", "209")[column] == "33.00 / 35.00 @ 10"
    assert "selected on the test set" in (tmp_path / "report" / "report.md").read_text().lower()
    csv = pd.read_csv(tmp_path / "report" / "report.csv", dtype={"exp": str}).set_index("exp")
    assert csv.loc["209", "test_best_cc_R1"] == 0.35


def test_seed_spread_enters_the_intervals_and_the_difference_mark(tmp_path):
    """213's first seed is lucky: over queries alone it is clearly better than 212, over the
    three seeds of each it is not (issue: the * marks were noise between runs)."""
    import yaml

    from ccreid.core.config import Params

    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    gains = {"212": 0.0, "212@2": 0.03, "212@3": 0.0, "213": 0.05, "213@2": -0.03, "213@3": 0.02}
    results = tmp_path / "synthetic"
    for run, gain in gains.items():  # the same queries (seed 0) in every run, answered with a run's gain
        write_result(results / run, 0, gain + 0.1)

    # The demo's params give 212 three seeds there (datasets.synthetic.seeds) and 213 one: the one
    # run is given 212's seed spread and the lucky seed is not marked (the old bootstrap marked it).
    mixed = report("synthetic", Params(raw), results, tmp_path / "mixed", experiments=["212", "213"])
    del raw["datasets"]["synthetic"]["seeds"]
    one = report("synthetic", Params(raw), results, tmp_path / "one", experiments=["212", "213"])
    raw["experiments"]["212"]["seeds"] = [1, 2, 3]  # 213 inherits them
    three = report("synthetic", Params(raw), results, tmp_path / "three", experiments=["212", "213"])

    single, several, borrowed = (next(r for r in out["rows"] if r["exp"] == "213") for out in (one, three, mixed))
    assert single["cc_runs"] == 1 and several["cc_runs"] == 3
    assert single["delta_cc_mAP_excludes_0"] and not several["delta_cc_mAP_excludes_0"]
    assert borrowed["delta_runs"] == "3/1" and not borrowed["delta_cc_mAP_excludes_0"]
    assert borrowed["delta_interval"] == "seeds (one run: its partner's spread) and queries"
    assert single["delta_interval"] == "queries only" and several["delta_interval"] == "seeds (paired) and queries"
    assert several["delta_cc_mAP_low"] < 0 < several["delta_cc_mAP_high"]
    assert several["cc_mAP"] == pytest.approx(several["cc_mAP_seeds_mean"])
    width = {name: row["cc_mAP_high"] - row["cc_mAP_low"] for name, row in (("one", single), ("three", several))}
    assert width["three"] > 1.5 * width["one"]
    assert "ignores training variance" in (tmp_path / "one/report.md").read_text()
    header = (tmp_path / "three/report.md").read_text()
    assert "seed-to-seed spread" in header and "ignores training variance" not in header


def test_runs_of_the_same_seeds_pair_in_the_difference_and_the_header_names_them(tmp_path):
    """212 and 213 trained from seeds 1-3: each seed moves both alike (its initial weights and
    batches), and 213 is 2 points better on every seed. Paired by seed the difference is marked;
    with 213's runs from other seeds (4-6, the same values) nothing pairs them and the seed spread
    covers the gain."""
    import yaml

    from ccreid.core.config import Params

    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    raw["experiments"]["212"]["seeds"] = [1, 2, 3]  # 213 inherits them
    seed_effects = [0.0, 0.08, -0.06]
    runs = {"same": ["213", "213@2", "213@3"], "other": ["213", "213@5", "213@6"]}
    rows = {}
    for case, names in runs.items():
        results = tmp_path / case / "synthetic"
        for base_run, run, effect in zip(["212", "212@2", "212@3"], names, seed_effects):
            write_result(results / base_run, 0, 0.1 + effect)
            write_result(results / run, 0, 0.12 + effect)
        if case == "other":
            raw["experiments"]["213"]["seeds"] = [4, 5, 6]
        out = report("synthetic", Params(raw), results, tmp_path / case / "out", experiments=["212", "213"])
        rows[case] = next(r for r in out["rows"] if r["exp"] == "213")
        rows[case]["header"] = (tmp_path / case / "out" / "report.md").read_text().split("\n|")[0]
    same, other = rows["same"], rows["other"]
    assert same["delta_cc_mAP"] == pytest.approx(other["delta_cc_mAP"])
    assert same["delta_same_seeds"] and not other["delta_same_seeds"]
    assert same["delta_cc_mAP_excludes_0"] and not other["delta_cc_mAP_excludes_0"]
    assert "per-seed differences where both ran the same training seeds, each pair" in same["header"]
    assert "weights and batches: 213)" in same["header"] and "on their own" not in same["header"]
    assert "each experiment's seeds on their own: 213)" in other["header"] and "per-seed diff" not in other["header"]


def test_an_interval_wider_than_the_metric_stops_at_0_and_100(tmp_path):
    """Three seeds far apart: t's interval of the mean reaches past 0 %, which no mAP can."""
    import yaml

    from ccreid.core.config import Params

    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    raw["experiments"]["212"]["seeds"] = [1, 2, 3]
    results = tmp_path / "synthetic"
    for run, gain in (("212", -0.25), ("212@2", 0.0), ("212@3", 0.3)):
        write_result(results / run, 0, gain)
    row = report("synthetic", Params(raw), results, tmp_path / "out", experiments=["212"])["rows"][0]
    assert row["cc_mAP_low"] == 0.0 < row["cc_mAP"] < row["cc_mAP_high"] < 1.0

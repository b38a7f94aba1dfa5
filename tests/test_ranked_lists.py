"""Ranked lists on a real prepared synthetic set: the list is the evaluated ranking (junk left
out, first-match rank as the metrics count it), and `ccreid rank-list` draws real PNGs."""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ccreid.data.prepared import load_prepared
from ccreid.evaluation.features import read_features, write_features
from ccreid.evaluation.scoring import good_and_junk
from ccreid.reporting.ranked_lists import Run, multi_shot, rank_queries, sample_queries
from helpers import call, recipe, run, tiny_params

EVAL = recipe(eval={"rerank": False, "distance": "cosine"}).eval


def fake_features(samples, split: str, noise: float, seed: int) -> dict:
    """Features close to a one-hot of the identity (noise 0: perfect), written as extract does."""
    part = samples[samples["split"] == split]
    rng = np.random.default_rng(seed)
    pids = part["pid"].to_numpy(np.int64)
    feats = np.eye(64)[pids % 64] + noise * rng.standard_normal((len(part), 64))
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    return {
        "feats": feats.astype(np.float32),
        "pids": pids,
        "camids": part["camid"].to_numpy(np.int64),
        "clothes": part["clothes_label"].to_numpy(np.int64),
        "paths": part["path"].tolist(),
    }


@pytest.fixture(scope="module")
def project(tmp_path_factory, synthetic_project):
    root = synthetic_project(tmp_path_factory.mktemp("ranked") / "project", tiny_params())
    data = load_prepared(root / "data/prepared/synthetic")
    splits = sorted({p.query for p in data.protocols} | {p.gallery for p in data.protocols})
    for exp, noise in (("212", 2.0), ("213", 0.3)):
        features = {split: fake_features(data.samples, split, noise, seed=len(exp)) for split in splits}
        write_features(root / f"results/synthetic/{exp}/features.h5", data.protocols, features)
    return root


def test_the_list_is_the_evaluated_ranking(project):
    splits, protocols = read_features(project / "results/synthetic/212/features.h5")
    run_ = Run("212", splits, protocols, EVAL)
    assert [p.name for p in multi_shot(protocols)][0] == "cc"
    for protocol in multi_shot(protocols):
        query, gallery = splits[protocol.query], splits[protocol.gallery]
        rows = sample_queries(query, gallery, protocol.mode, 1000, seed=0)
        assert len(rows) > 0
        for item in rank_queries(run_, protocol, rows, top=len(gallery["pids"])):
            good, junk = (mask[0] for mask in good_and_junk(query, gallery, protocol.mode, np.array([item.index])))
            assert not junk[item.gallery].any()  # same identity, wrong camera or clothes: left out
            assert len(item.gallery) == (~junk).sum()
            assert np.array_equal(item.good, good[item.gallery])
            # Independently: the rank of the nearest true match among the non-junk items.
            dist = 1 - gallery["feats"].astype(np.float64) @ query["feats"][item.index].astype(np.float64)
            valid = ~junk
            nearest_good = dist[good].min()
            expected = int((dist[valid & ~good] <= nearest_good + 1e-6).sum())
            assert item.first_rank == expected
            assert item.good[item.first_rank] and not item.good[: item.first_rank].any()
            assert np.all(np.diff(dist[item.gallery]) >= -1e-6)  # nearest first


def test_every_query_s_first_true_match_is_the_rank_per_query_csv_holds(project):
    """One scorer: evaluation's per_query.csv and the ranked list agree on every query's rank."""
    call(["evaluate", "--dataset", "synthetic", "--exp", "213"], cwd=project)
    per_query = pd.read_csv(project / "results/synthetic/213/per_query.csv")
    splits, protocols = read_features(project / "results/synthetic/213/features.h5")
    for protocol in multi_shot(protocols):
        evaluated = per_query[per_query["protocol"] == protocol.name]
        answered = evaluated["ap"].notna().to_numpy()
        ranked = rank_queries(Run("213", splits, protocols, EVAL), protocol, np.flatnonzero(answered))
        assert len(ranked) == answered.sum() > 0
        assert [item.first_rank for item in ranked] == evaluated["first_rank"][answered].astype(int).tolist()


def test_the_sample_is_seeded_and_has_true_matches(project):
    splits, protocols = read_features(project / "results/synthetic/213/features.h5")
    cc = multi_shot(protocols)[0]
    query, gallery = splits[cc.query], splits[cc.gallery]
    first = sample_queries(query, gallery, cc.mode, 3, seed=0)
    assert np.array_equal(first, sample_queries(query, gallery, cc.mode, 3, seed=0))
    assert len(first) == 3 and good_and_junk(query, gallery, cc.mode, first)[0].any(axis=1).all()


def colours(png: bytes) -> tuple[int, int, tuple[int, int]]:
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    green = int(((g > 150) & (r < 60) & (b < 60)).sum())
    red = int(((r > 200) & (g < 40) & (b < 40)).sum())
    return green, red, image.shape[:2]


def test_rank_list_command_draws_one_png_per_protocol(project):
    out = project / "results/synthetic/213/ranked"
    printed = call(["rank-list", "--dataset", "synthetic", "--exp", "213"], cwd=project)
    assert printed.stdout.split() == [
        str(out.relative_to(project) / "cc.png"),
        str(out.relative_to(project) / "sc.png"),
    ]
    single = (out / "cc.png").read_bytes()
    green, red, (height, width) = colours(single)
    assert green > 0 and red > 0  # 213 finds true matches (green) among other identities (red)
    # Again in a process of its own (the command as users run it): same data, same bytes.
    run(["ccreid", "rank-list", "--dataset", "synthetic", "--exp", "213"], cwd=project)
    assert (out / "cc.png").read_bytes() == single

    args = ["--dataset", "synthetic", "--exp", "213", "--against", "212", "--queries", "3"]
    call(["rank-list", *args], cwd=project)
    _, _, (short_height, double_width) = colours((out / "cc_vs_212.png").read_bytes())
    assert double_width > 1.8 * width  # two blocks side by side
    assert short_height < height  # 3 queries, not 8
    assert (out / "sc_vs_212.png").is_file()


def test_rank_list_of_an_experiment_without_features_is_one_clear_error(project):
    failed = call(["rank-list", "--dataset", "synthetic", "--exp", "214"], cwd=project, check=False)
    assert failed.returncode == 2 and "features.h5" in failed.stderr and "Traceback" not in failed.stderr


def test_the_report_embeds_the_ranked_lists_of_the_compared_experiments(project):
    for exp in ("212", "213"):
        call(["evaluate", "--dataset", "synthetic", "--exp", exp], cwd=project)
    call(["report", "--dataset", "synthetic", "--cmc", "213"], cwd=project)
    out = project / "results/synthetic"
    assert sorted(p.name for p in (out / "ranked").iterdir()) == ["213_cc.png", "213_sc.png"]
    drawn = (out / "ranked/213_cc.png").read_bytes()
    # 213 beside its base 212 on the same queries: the same picture as rank-list --against draws.
    call(
        ["rank-list", "--dataset", "synthetic", "--exp", "213", "--against", "212"],
        cwd=project,
    )
    _, _, (_, width) = colours(drawn)
    _, _, (_, width_against) = colours((out / "213/ranked/cc_vs_212.png").read_bytes())
    assert width == width_against
    md = (out / "report.md").read_text()
    assert "### 213 vs 212" in md and "![ranked/213_cc.png](ranked/213_cc.png)" in md
    page = (out / "report.html").read_text()
    assert base64.b64encode(drawn).decode() in page

"""The synthetic demo's CAL frontier: cc mAP of 212, of its CE control and of the untrained network.

For each named setting (changes to params.yaml `datasets.synthetic`, deep-merged over the
repository's section) the script writes a project folder with that params.yaml plus a CE control
experiment (212 with `loss.clothes.enabled: false` and `loss.adversarial.enabled: false`, unless
params.yaml already registers one), then, through ccreid's own stage functions (the code the
`ccreid` CLI runs): synthesizes and prepares the set, trains 212 and the control for each seed
(runs `<exp>@<seed>`), extracts and evaluates them, and evaluates the same network untrained
(built and initialised exactly as training builds it, seed 1, saved as training saves it).

It prints one table row per setting: wall minutes per training (mean over the trainings), cc/sc
mAP of 212 per seed, untrained cc mAP, the control's cc mAP per seed, and CAL's gain (212 − CE in
cc mAP, paired by seed) as mean with a two-sided 95 % Student-t interval over the per-seed
differences (n − 1 degrees of freedom), and by the report's own method (the same per-seed
differences with the queries' shared sampling variance added; before issue 29 a bootstrap).
`--test-ids N` also evaluates every trained model on N test people (the same training images,
checked), in a second table: the t interval holds the test people fixed, and a small test set can
make a gain that its people do not share. Folders persist
under --workdir: a rerun reuses every stage whose fingerprint is fresh, so seeds can be added later.

    nice -n 19 python benchmarks/demo_frontier.py --settings current --seeds 1 2 3
    nice -n 19 python benchmarks/demo_frontier.py --settings w025-head15 --test-ids 71
    nice -n 19 python benchmarks/demo_frontier.py --list
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from ccreid.core.config import Params, deep_merge, load_params  # noqa: E402
from ccreid.core.schema import RunConfig  # noqa: E402
from ccreid.core.sections import train_section  # noqa: E402
from ccreid.data.synthetic import DRAWING  # noqa: E402

DRAWING_DEFAULTS = dict(DRAWING)  # synth.py's drawing strengths; a setting's "draw" overrides them

CE_ID = "212ce"
CE_ENTRY = {
    "base": "212",
    "note": "212 without the clothes classifier and adversarial loss (CE control)",
    "loss": {"clothes": {"enabled": False}, "adversarial": {"enabled": False}},
}

# Each setting: a deep merge over params.yaml datasets.synthetic ("current": the file as it is),
# plus "draw": overrides of ccreid.data.synthetic.DRAWING (the drawing strengths) for this setting only.
# The demo's settings before issue 14 (commit 43722b7, network at 1/8 width); every measured setting
# is a change of these, so the table can be rebuilt at any later commit.
OLD_DEFAULT = {
    "schedule_scale": 0.4,
    "overrides": {"model": {"width": 0.125}},
    "synth": {"train_ids": 60, "images_per_camera": 4, "test_ids": 30},
    "draw": {"head_scale": 1.0, "body_spread": 1.0},
}
_CHANGES: dict[str, dict] = {
    "old-default": {},
    "lr1e-3": {"overrides": {"train": {"lr": 1.0e-3}, "loss": {"clothes": {"lr": 1.0e-3}}}},
    "lr1e-2": {"overrides": {"train": {"lr": 1.0e-2}, "loss": {"clothes": {"lr": 1.0e-2}}}},
    "mile50": {"overrides": {"train": {"milestones": [50]}}},  # lr drop at 20 of 24 epochs, not 8 and 16
    "epochs60": {"schedule_scale": 1.0},
    "size96": {"size": [96, 48]},
    "palette60": {"synth": {"palette_size": 60}},
    "jitter0": {"draw": {"outfit_jitter": 0.0}},
    "idstrong": {"draw": {"head_scale": 1.5, "body_spread": 1.5, "hair_dyes": True}},
    "idstrong-jitter0": {"draw": {"head_scale": 1.5, "body_spread": 1.5, "hair_dyes": True, "outfit_jitter": 0.0}},
    "noclothes": {"synth": {"palette_size": 2}, "draw": {"outfit_jitter": 0.0}},
    "ids150": {"synth": {"train_ids": 150}},
    "ids150-ipc2": {"synth": {"train_ids": 150, "images_per_camera": 2}},
    "ids300-ipc2": {"synth": {"train_ids": 300, "images_per_camera": 2}},
    "ids300-ipc2-s48": {"size": [48, 24], "synth": {"train_ids": 300, "images_per_camera": 2}},
    "ids300-ipc2-e18": {"schedule_scale": 0.3, "synth": {"train_ids": 300, "images_per_camera": 2}},
    "ids240-ipc2": {"synth": {"train_ids": 240, "images_per_camera": 2}},
    "ids300-ipc2-e36": {"schedule_scale": 0.6, "synth": {"train_ids": 300, "images_per_camera": 2}},
}
SETTINGS: dict[str, dict] = {"current": {}} | {
    name: deep_merge(OLD_DEFAULT, change) for name, change in _CHANGES.items()
}
# Issue 14's recipe options for the demo, changes of ids240-ipc2 (the default from bc7fcbd to 282a2c0), values in
# the 60-epoch scale (run_config scales the merged overrides by schedule_scale, rounding):
# clothes/adversarial phase from epoch 5 -> 2 of 24 instead of 25 -> 10; milestones 40/50 -> 16/20.
_RECIPE_CHANGES: dict[str, dict] = {
    "cal-early": {"overrides": {"loss": {"clothes": {"start_epoch": 5}}}},
    "mile-late": {"overrides": {"train": {"milestones": [40, 50]}}},
    "cal-early-mile-late": {"overrides": {"loss": {"clothes": {"start_epoch": 5}}, "train": {"milestones": [40, 50]}}},
    "cal-early-mile-late-e36": {
        "schedule_scale": 0.6,  # 36 epochs: start 3, milestones 24/30
        "overrides": {"loss": {"clothes": {"start_epoch": 5}}, "train": {"milestones": [40, 50]}},
    },
}
# Clothes as a training shortcut, as in real data (every person's outfits their own: 480 outfits for
# 240 people), so that the CE control can fit the training ids by clothes and CAL has one to remove.
_RECIPE_CHANGES |= {
    "palette480": {"synth": {"palette_size": 480}},
    "palette480-cal-early-mile-late": {
        "synth": {"palette_size": 480},
        "overrides": {"loss": {"clothes": {"start_epoch": 5}}, "train": {"milestones": [40, 50]}},
    },
}
# The network's width: 212's identity loss falls only from 5.6 to 4.6 in the demo's 720 steps
# (ln 240 = 5.5) at 1/8 of ResNet-50's channels, far from fitting its training people.
# width025 is the default after 282a2c0.
_RECIPE_CHANGES |= {
    "width025": {"overrides": {"model": {"width": 0.25}}},
    "width0375": {"overrides": {"model": {"width": 0.375}}},
    "width050": {"overrides": {"model": {"width": 0.5}}},
    "width025-ids300": {"synth": {"train_ids": 300}, "overrides": {"model": {"width": 0.25}}},
    "width025-mile-late": {"overrides": {"model": {"width": 0.25}, "train": {"milestones": [40, 50]}}},
    "width025-e30": {"schedule_scale": 0.5, "overrides": {"model": {"width": 0.25}}},
    "width025-e36": {"schedule_scale": 0.6, "overrides": {"model": {"width": 0.25}}},
    "width025-noerase": {"overrides": {"model": {"width": 0.25}, "augment": {"erasing": {"p": 0.0}}}},
    "width025-warmup": {"overrides": {"model": {"width": 0.25}, "train": {"warmup_epochs": 10}}},
    "width025-lr2e-3": {
        "overrides": {"model": {"width": 0.25}, "train": {"lr": 2.0e-3}, "loss": {"clothes": {"lr": 2.0e-3}}}
    },
    "width025-lr6e-3": {
        "overrides": {"model": {"width": 0.25}, "train": {"lr": 6.0e-3}, "loss": {"clothes": {"lr": 6.0e-3}}}
    },
}
SETTINGS |= {name: deep_merge(SETTINGS["ids240-ipc2"], change) for name, change in _RECIPE_CHANGES.items()}
# The identity signal, changes of width025 (the default from d2295c7): at 64x32 a head is about 5 px
# tall, and hair, face and head shape are most of what tells people apart. head15 (heads x1.5, body
# proportions spread x1.5) is the default after this; its rows, measured with --test-ids 71, showed
# that 30 test people were the demo's largest noise (benchmarks/log/2026-12-02-demo-frontier-identity-signal.md).
_IDENTITY_CHANGES: dict[str, dict] = {
    "w025-head15": {"draw": {"head_scale": 1.5, "body_spread": 1.5}},
    "w025-idstrong": {"draw": {"head_scale": 1.5, "body_spread": 1.5, "hair_dyes": True}},
    "w025-head175-body2": {"draw": {"head_scale": 1.75, "body_spread": 2.0}},
    "w025-head15-wd5e-5": {
        "draw": {"head_scale": 1.5, "body_spread": 1.5},
        "overrides": {"train": {"weight_decay": 5.0e-5}},
    },
    "w025-head15-e30": {"draw": {"head_scale": 1.5, "body_spread": 1.5}, "schedule_scale": 0.5},
    "w025-head15-s48-e36": {"draw": {"head_scale": 1.5, "body_spread": 1.5}, "schedule_scale": 0.6, "size": [48, 24]},
}
SETTINGS |= {name: deep_merge(SETTINGS["width025"], change) for name, change in _IDENTITY_CHANGES.items()}

T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def t_interval(values: list[float]) -> tuple[float, float, float]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan"), float("nan")
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = T975.get(n - 1, 1.96) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def project_params(setting: dict) -> dict:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["datasets"] = {"synthetic": deep_merge(raw["datasets"]["synthetic"], setting)}
    raw["experiments"].setdefault(CE_ID, CE_ENTRY)
    return raw


def untrained(prepared: Path, cfg: RunConfig, out: Path) -> None:
    """The network exactly as training initialises it, saved as training saves its model."""
    import torch

    from ccreid.data.prepared import load_prepared
    from ccreid.engine.trainer import Trainer, seed_everything
    from ccreid.models.checkpoint import save_model

    if out.exists():
        return
    torch.set_num_threads(cfg.train.cpu_threads)
    seed_everything(cfg.train.seed)
    trainer = Trainer(load_prepared(prepared), cfg, torch.device("cpu"))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        save_model({"model": trainer.model.state_dict(), "config": train_section(cfg), **trainer.meta}, out)
    finally:
        trainer.close()


def synthesized(params: Params, root: Path) -> Path:
    """The setting's synthetic set drawn into `root`/raw and prepared into `root`/prepared."""
    from ccreid.stages.prepare import prepare
    from ccreid.stages.synth import synthesize

    data = params.dataset("synthetic").model_copy(update={"root": str(root / "raw")})
    synthesize(root / "raw", data.synth)
    prepare("synthetic", data, root / "prepared", workers=1)
    return root / "prepared"


def scored(prepared: Path, model: Path, cfg: RunConfig, out: Path) -> dict:
    """`model`'s features on `prepared` and their metrics, written into `out`."""
    from ccreid.stages.evaluate import evaluate
    from ccreid.stages.extract import extract

    extract(prepared, model, cfg, out / "features.h5", device="cpu")
    return evaluate(out / "features.h5", cfg.eval, out / "metrics.json", device="cpu")


def cc_aps(results: Path, run_id: str):
    """A run's cc average precision per query, in path order (the queries two runs share)."""
    import pandas as pd

    table = pd.read_csv(results / run_id / "per_query.csv")
    return table[table["protocol"] == "cc"].sort_values("path")["ap"].to_numpy()


def report_gain(results: Path, seeds: list[int]) -> tuple[float, float, float]:
    """CAL − CE in cc mAP by the report's method: the t interval of the per-seed differences with
    the queries' shared sampling variance added (docs/report.md, "Intervals")."""
    import numpy as np

    from ccreid.evaluation.stats import difference_interval

    ce = np.stack([cc_aps(results, f"{CE_ID}@{s}") for s in seeds])
    cal = np.stack([cc_aps(results, f"212@{s}") for s in seeds])
    gain = difference_interval(ce, cal, same_seeds=True)
    return gain.estimate, gain.low, gain.high


def on_more_people(folder: Path, raw: dict, test_ids: int, seeds: list[int]) -> dict:
    """The setting's trained models evaluated on `test_ids` test people instead of its own test set.

    Test pids follow the train and val pids and a person's images depend only on (seed, pid), so
    the training split is the same images; checked here before anything is evaluated."""
    import h5py
    import numpy as np

    from ccreid.data.prepared import load_prepared

    raw = copy.deepcopy(raw)
    raw["datasets"]["synthetic"]["synth"]["test_ids"] = test_ids
    params = Params(raw, source=str(folder / "params.yaml"))
    base = folder / f"test{test_ids}"
    prepared = synthesized(params, base)

    def training_split(prepared: Path):
        samples = load_prepared(prepared).samples
        rows = np.flatnonzero((samples["split"] == "train").to_numpy())
        with h5py.File(prepared / "images.h5", "r") as f:
            return samples.iloc[rows].reset_index(drop=True), f["images"][rows]

    (own_rows, own_images), (rows, images) = training_split(folder / "prepared"), training_split(prepared)
    if not (own_rows.equals(rows) and np.array_equal(own_images, images)):
        raise SystemExit(f"{base}: the training split differs from {folder / 'prepared'}'s")
    cc = {}
    for model in sorted((folder / "results").glob("*/model.pt")):
        run_id = model.parent.name
        cfg = params.run_config("synthetic", "212@1" if run_id == "untrained" else run_id)
        cc[run_id] = scored(prepared, model, cfg, base / "results" / run_id)["cc"]["mAP"]
    more = {
        "test_ids": test_ids,
        "cal_cc": [cc[f"212@{s}"] for s in seeds],
        "ce_cc": [cc[f"{CE_ID}@{s}"] for s in seeds if f"{CE_ID}@{s}" in cc],
        "untrained_cc": cc["untrained"],
    }
    if len(more["ce_cc"]) == len(seeds):
        more["gain"] = t_interval([a - b for a, b in zip(more["cal_cc"], more["ce_cc"])])
        more["report_gain"] = report_gain(base / "results", seeds)
    return more


def measure(
    name: str, setting: dict, seeds: list[int], workdir: Path, ce: bool = True, test_ids: int | None = None
) -> dict:
    import ccreid.data.synthetic as synth_module
    from ccreid.stages.train import train

    folder = workdir / name
    folder.mkdir(parents=True, exist_ok=True)
    setting = copy.deepcopy(setting)
    drawing = setting.pop("draw", {})
    synth_module.DRAWING.clear()
    synth_module.DRAWING.update(DRAWING_DEFAULTS | drawing)
    raw = project_params(setting)
    (folder / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    params = Params(raw, source=str(folder / "params.yaml"))
    start = time.time()
    prepared = synthesized(params, folder)
    setup_s = time.time() - start

    def run(run_id: str) -> dict:
        cfg = params.run_config("synthetic", run_id)
        out = folder / "results" / run_id
        model = out / "model.pt"
        t0 = time.time()
        fresh = model.exists()
        train(prepared, cfg, model, device="cpu")
        train_s = time.time() - t0
        timing = out / "train_seconds.json"
        if fresh and timing.exists():
            train_s = json.loads(timing.read_text())["seconds"]
        else:
            timing.write_text(json.dumps({"seconds": train_s, "load": os.getloadavg()}))
        metrics = scored(prepared, model, cfg, out)
        print(
            f"  {name} {run_id}: cc {metrics['cc']['mAP']:.4f} sc {metrics['sc']['mAP']:.4f} "
            f"train {train_s / 60:.2f} min (load {os.getloadavg()[0]:.2f})",
            flush=True,
        )
        return {
            "cc": metrics["cc"]["mAP"],
            "sc": metrics["sc"]["mAP"],
            "train_s": train_s,
            "epochs": cfg.train.epochs,
        }

    cal = {s: run(f"212@{s}") for s in seeds}
    ctrl = {s: run(f"{CE_ID}@{s}") for s in seeds} if ce else {}
    cfg = params.run_config("synthetic", "212@1")
    out = folder / "results" / "untrained"
    untrained(prepared, cfg, out / "model.pt")
    zero = scored(prepared, out / "model.pt", cfg, out)
    gains = [cal[s]["cc"] - ctrl[s]["cc"] for s in seeds if s in ctrl]
    trainings = list(cal.values()) + list(ctrl.values())
    row = {
        "setting": name,
        "overrides": setting,
        "draw": synth_module.DRAWING.copy(),
        "seeds": seeds,
        "setup_s": setup_s,
        "epochs": cfg.train.epochs,
        "steps": steps(prepared, cfg),
        "train_min": sum(r["train_s"] for r in trainings) / len(trainings) / 60,
        "cal_cc": [cal[s]["cc"] for s in seeds],
        "cal_sc": [cal[s]["sc"] for s in seeds],
        "untrained_cc": zero["cc"]["mAP"],
        "untrained_sc": zero["sc"]["mAP"],
        "ce_cc": [ctrl[s]["cc"] for s in seeds if s in ctrl],
        "ce_sc": [ctrl[s]["sc"] for s in seeds if s in ctrl],
    }
    if gains:
        row["gain"] = t_interval(gains)
        row["report_gain"] = report_gain(folder / "results", seeds)
    if test_ids is not None:
        row["more_people"] = on_more_people(folder, raw, test_ids, seeds)
    (folder / "row.json").write_text(json.dumps(row, indent=1))
    return row


# The default run timed on a fresh clone of 0a9d454 (benchmarks/log/2026-12-03-default-run.md): 10.5 min
# wall, of which its 11 trainings took 1,006 s of job time, two at a time: 6.66 trainings of 212
# (151 s each at 60 epochs; the 24-epoch pair scales with it); the rest (install, synthesis,
# preparation, extraction, evaluation, report) 2.1 min. 8fb8d4d's default (14 trainings at 24
# epochs, 10.1 min) gave 15.7 and 1.7, the "Epochs" table's estimates; the tables before it used step counts.
REGISTRY_UNITS, OTHER_MIN = 6.66, 2.1


def steps(prepared: Path, cfg: RunConfig) -> int:
    from ccreid.data.prepared import load_prepared
    from ccreid.data.sampler import IdentitySampler

    samples = load_prepared(prepared).samples
    labels = samples[samples["split"] == "train"]["label"].to_numpy()
    train = cfg.train
    sampler = IdentitySampler(labels, train.ids_per_batch, train.images_per_id, train.seed)
    return len(sampler.epoch(0)) * train.epochs


def registry_minutes(row: dict) -> float:
    """The default run's wall minutes at this setting: its trainings scale with this setting's 212
    training, as measured (two at a time, as the default run trains)."""
    return OTHER_MIN + REGISTRY_UNITS * row["train_min"] / 2


def pct(values) -> str:
    return "/".join(f"{100 * v:.1f}" for v in values)


def interval(gain) -> str:
    return f"{100 * gain[0]:+.1f} [{100 * gain[1]:+.1f}, {100 * gain[2]:+.1f}]" if gain else "—"


def table(rows: list[dict]) -> str:
    lines = [
        "| setting | steps | est. default run (min) | min/training (measured, shared machine) | 212 cc mAP % (per seed) | 212 sc mAP % | untrained cc % "
        "| CE cc mAP % | gain (pp) mean [95 % t] | gain [report's interval] | 212 cc / untrained |",
        "|---|---:|---:|---:|---|---|---:|---|---|---|---:|",
    ]
    for r in rows:
        cc_mean = sum(r["cal_cc"]) / len(r["cal_cc"])
        lines.append(
            f"| {r['setting']} | {r.get('steps', '?')} | "
            f"{registry_minutes(r):.1f} | {r['train_min']:.2f} | {pct(r['cal_cc'])} | "
            f"{pct(r['cal_sc'])} | {100 * r['untrained_cc']:.1f} | {pct(r['ce_cc']) or '—'} | "
            f"{interval(r.get('gain'))} | {interval(r.get('report_gain'))} | {cc_mean / r['untrained_cc']:.2f}× |"
        )
    more = [r for r in rows if "more_people" in r]
    if more:
        lines += [
            "",
            "The same models on more test people (--test-ids):",
            "",
            "| setting | test people | 212 cc mAP % (per seed) | untrained cc % | CE cc mAP % "
            "| gain (pp) mean [95 % t] | gain [report's interval] | 212 cc / untrained |",
            "|---|---:|---|---:|---|---|---|---:|",
        ]
        for r in more:
            m = r["more_people"]
            lines.append(
                f"| {r['setting']} | {m['test_ids']} | {pct(m['cal_cc'])} | {100 * m['untrained_cc']:.1f} | "
                f"{pct(m['ce_cc']) or '—'} | {interval(m.get('gain'))} | {interval(m.get('report_gain'))} | "
                f"{sum(m['cal_cc']) / len(m['cal_cc']) / m['untrained_cc']:.2f}× |"
            )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=["current"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--no-ce", action="store_true", help="skip the CE control (212 and untrained only)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ccreid-frontier"))
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="an extra setting given inline: a JSON merge over datasets.synthetic",
    )
    parser.add_argument(
        "--test-ids",
        type=int,
        metavar="N",
        help="also evaluate every trained model on N test people (the same training images; table of its own)",
    )
    parser.add_argument("--list", action="store_true")
    parser.add_argument(
        "--collect",
        action="store_true",
        help="train nothing: print the table of the settings' rows already under --workdir",
    )
    args = parser.parse_args(argv)
    settings = dict(SETTINGS)
    for item in args.set:
        key, _, value = item.partition("=")
        settings[key] = json.loads(value)
        if key not in args.settings:
            args.settings.append(key)
    if args.list:
        for key, value in settings.items():
            print(f"{key}: {json.dumps(value)}")
        return
    if args.collect:
        rows = []
        for name in args.settings:
            folder = args.workdir / name
            if not (folder / "row.json").exists():
                continue
            row = json.loads((folder / "row.json").read_text()) | {"setting": name}
            if "steps" not in row:  # rows written before the step count was recorded
                params = load_params(folder / "params.yaml")
                row["steps"] = steps(folder / "prepared", params.run_config("synthetic", "212@1"))
            rows.append(row)
        print(table(rows))
        return
    load_params(REPO / "params.yaml")  # the repository's file must be valid first
    rows = [
        measure(
            name, copy.deepcopy(settings[name]), args.seeds, args.workdir, ce=not args.no_ce, test_ids=args.test_ids
        )
        for name in args.settings
    ]
    print(table(rows))


if __name__ == "__main__":
    main()

"""`ccreid <stage>`: thin subcommands over the stage modules. Snakemake and DVC call only these.

Every path has a default from ccreid.core.paths, and every one can be given explicitly. Errors a
user can fix are printed as one message (no traceback) with exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

import yaml

from ccreid.core import paths
from ccreid.core.atomic import DiskFullError
from ccreid.core.benchmark import benchmarked
from ccreid.core.config import load_params, model_owner
from ccreid.core.errors import CCReIDError


def _params(args):
    return load_params(args.params)


def _benchmark(args, path: Path) -> Path | None:
    """Where the job's benchmark goes: its Snakemake benchmark path, when asked (`--benchmark`,
    given by DVC's stages; under Snakemake, Snakemake writes it)."""
    return path if args.benchmark else None


def cmd_synth(args) -> None:
    from ccreid.stages.synth import synthesize

    params = _params(args)
    cfg = params.dataset(args.dataset)
    if cfg.synth is None:
        raise CCReIDError(f"datasets.{args.dataset} has no `synth:` section: it is not a synthetic data set")
    out = Path(args.out or cfg.root)
    with benchmarked(_benchmark(args, paths.benchmark_path(args.dataset, "synth")), out):
        summary = synthesize(out, cfg.synth)
    print(json.dumps(summary, sort_keys=True))


def cmd_prepare(args) -> None:
    from ccreid.stages.prepare import check, prepare, summary_text

    params = _params(args)
    cfg = params.dataset(args.dataset)
    if args.check:
        print(check(args.dataset, cfg, params.plugins))
        return
    out = Path(args.out or paths.prepared_dir(args.dataset))
    with benchmarked(_benchmark(args, paths.benchmark_path(args.dataset, "prepare")), out):
        summary = prepare(args.dataset, cfg, out, plugins=params.plugins)
    print(summary_text(summary))


def cmd_train(args) -> None:
    from ccreid.stages.train import train

    params = _params(args)
    run_cfg = params.run_config(args.dataset, args.exp)
    owner = model_owner(params, args.dataset, args.exp)
    out = Path(args.out or paths.model_path(args.dataset, owner))
    trained = args.exp if args.out else owner  # the run whose folder holds the model
    with benchmarked(_benchmark(args, paths.benchmark_path(args.dataset, "train", trained)), out):
        train(Path(args.prepared or paths.prepared_dir(args.dataset)), run_cfg, out, device=args.device)
    print(out)


def cmd_weights(args) -> None:
    """Fetch (or check) ImageNet weights: of one backbone, or of what a run's training reads."""
    from ccreid.stages.weights import backbone_weights, run_weights

    if args.backbone:
        from ccreid.core.weights import weights_path

        fetched = weights_path(args.backbone)
        with benchmarked(_benchmark(args, paths.weights_benchmark_path(fetched.name)), fetched):
            print(backbone_weights(args.backbone))
        return
    if not (args.dataset and args.exp):
        raise CCReIDError("ccreid weights: give --backbone NAME, or --dataset and --exp of a run")
    from ccreid.core.weights import weights_path

    model = _params(args).run_config(args.dataset, args.exp).model
    measured: contextlib.AbstractContextManager = contextlib.nullcontext()
    if model.pretrained == "imagenet":  # else nothing to fetch: no job of Snakemake's weights rule either
        fetched = weights_path(model.backbone_name)
        measured = benchmarked(_benchmark(args, paths.weights_benchmark_path(fetched.name)), fetched)
    with measured:
        path = run_weights(model, args.record and Path(args.record))
    if path is not None:
        print(path)


def cmd_extract(args) -> None:
    from ccreid.stages.extract import extract

    params = _params(args)
    run_cfg = params.run_config(args.dataset, args.exp)
    owner = model_owner(params, args.dataset, args.exp)
    out = Path(args.out or paths.features_path(args.dataset, args.exp))
    with benchmarked(_benchmark(args, paths.benchmark_path(args.dataset, "extract", args.exp)), out):
        extract(
            Path(args.prepared or paths.prepared_dir(args.dataset)),
            Path(args.model or paths.model_path(args.dataset, owner)),
            run_cfg,
            out,
            device=args.device,
        )
    print(out)


def cmd_evaluate(args) -> None:
    from ccreid.stages.evaluate import evaluate

    params = _params(args)
    run_cfg = params.run_config(args.dataset, args.exp)
    out = Path(args.out or paths.metrics_path(args.dataset, args.exp))
    with benchmarked(_benchmark(args, paths.benchmark_path(args.dataset, "evaluate", args.exp)), out):
        metrics = evaluate(
            Path(args.features or paths.features_path(args.dataset, args.exp)), run_cfg.eval, out, device=args.device
        )
    for name, values in metrics.items():
        print(f"{name:>10}: mAP {values['mAP']:.4f}  R1 {values['R1']:.4f}  mINP {values['mINP']:.4f}")


def cmd_report(args) -> None:
    from ccreid.stages.report import report

    params = _params(args)
    results_dir = Path(args.results or paths.RESULTS_DIR / args.dataset)
    # Ranked lists need the prepared images: those given, else the data set's when prepared.
    prepared = Path(args.prepared) if args.prepared else paths.prepared_dir(args.dataset)
    written = report(
        args.dataset,
        params,
        results_dir,
        Path(args.out or results_dir),
        cmc_experiments=args.cmc,
        experiments=args.experiments,
        prepared_dir=prepared if args.prepared or (prepared / paths.IMAGES).is_file() else None,
        logs_dir=Path(args.logs),
    )
    print("\n".join(str(path) for path in written["files"].values()))


def cmd_rank_list(args) -> None:
    from ccreid.stages.rank_list import rank_list

    params = _params(args)
    names = [args.exp] + ([args.against] if args.against else [])
    runs = [(exp, paths.features_path(args.dataset, exp), params.run_config(args.dataset, exp).eval) for exp in names]
    out = Path(args.out or paths.run_dir(args.dataset, args.exp) / paths.RANKED_DIR)
    prepared = Path(args.prepared or paths.prepared_dir(args.dataset))
    for path in rank_list(args.dataset, prepared, runs, out, queries=args.queries, seed=args.seed):
        print(path)


def cmd_check(args) -> None:
    from ccreid.stages.check import check

    params = _params(args)
    runs = args.runs or [run for exp in params.table(params.default.table) for run in params.runs(exp, args.dataset)]
    checked = check([params.run_config(args.dataset, run) for run in runs])
    print(f"{checked} training(s) of {len(runs)} run(s) checked: every member builds and keeps its contract")


def cmd_smoke(args) -> None:
    from ccreid.stages.smoke import smoke

    params = _params(args)
    prepared = Path(args.prepared or paths.prepared_dir(args.dataset))
    if not (prepared / paths.IMAGES).is_file():
        raise CCReIDError(
            f"{prepared}: data set {args.dataset!r} is not prepared; build it first with "
            f"`snakemake --cores all {paths.prepared_dir(args.dataset)}`"
        )
    out = paths.smoke_path(args.dataset, args.exp)
    record = smoke(prepared, params.run_config(args.dataset, args.exp), out, args.batches, args.device)
    print(f"SMOKE RUN of {args.exp} on {args.dataset} ({record['seconds']} s): not a result")
    for number, losses in enumerate(record["losses"], start=1):
        print(f"  batch {number}: " + "  ".join(f"{name} {value:.4f}" for name, value in losses.items()))
    for name, values in record["metrics"].items():
        print(f"  {name:>10}: mAP {values['mAP']:.4f}  R1 {values['R1']:.4f}")
    print(out)


def cmd_queue(args) -> None:
    """Queue registry entries as DVC experiments (one row each in `dvc exp show`)."""
    from ccreid.dvc_pipeline import queue

    params = _params(args)
    params.dataset(args.dataset)
    queued = queue(params, args.dataset, args.experiments or params.table(params.default.table))
    print(
        f"queued {len(queued)} experiment(s); run them with `dvc queue start -j N`, then bring their results "
        f"into the workspace with `ccreid dvc apply {' '.join(queued)}`"
    )


def _same_training_note(params, dataset: str, run: str) -> str:
    owner = model_owner(params, dataset, run)
    return f"trains the same model as {owner} (on {dataset})" if owner != run else ""


def cmd_config_show(args) -> None:
    params = _params(args)
    config = params.run_config(args.dataset, args.exp) if args.dataset else params.resolve(args.exp)
    # without the plugins' folder and files: params.yaml's, not the experiment's
    resolved = config.model_dump(mode="json", exclude={"plugins"})
    note = _same_training_note(params, args.dataset or params.default.dataset, args.exp)
    print((f"# {args.exp} {note}\n" if note else "") + yaml.safe_dump(resolved, sort_keys=False), end="")


def cmd_config_diff(args) -> None:
    from ccreid.reporting.config_diff import change_lines, experiment_changes

    params = _params(args)
    if args.dataset:
        params.dataset(args.dataset)
    lines = change_lines(experiment_changes(params, args.old, args.new, args.dataset))
    print("\n".join(lines) if lines else f"{args.old} and {args.new}: no difference in the resolved config")


def cmd_config_write(args) -> None:
    """DVC's config stage: one JSON file per stage and run of DVC's runs table, holding exactly the
    config that stage reads and the hash of the code it runs (the ones its fingerprint records).
    DVC stages depend on these files instead of all of params.yaml and src/, so its params follow
    inheritance (editing 197 changes 199's files, 199 is based on it, and leaves 212's unchanged)
    and its code deps follow each stage's import closure."""
    from ccreid.dvc_pipeline import write_stage_configs

    write_stage_configs(_params(args), Path(args.out))


def cmd_dvc_sync(args) -> None:
    from ccreid.dvc_pipeline import TABLE, sync

    changes = sync(_params(args), tuple(args.drop))
    print(f"{TABLE}: " + (" ".join(changes) if changes else "up to date"))


def cmd_dvc_record(args) -> None:
    from ccreid.dvc_pipeline import TABLE, record

    done = record(_params(args), tuple(args.drop))
    if done["synced"]:
        print(f"{TABLE}: {' '.join(done['synced'])}")
    names = done["recorded"]
    more = f" and {len(names) - 8} more" if len(names) > 8 else ""
    print(
        f"recorded {len(names)} stage(s) in dvc.lock and DVC's cache{': ' if names else ''}{' '.join(names[:8])}{more}"
    )
    for line in done["stale"]:
        print(f"not recorded, stale (to build again): {line}")


def cmd_dvc_pull(args) -> None:
    from ccreid.dvc_pipeline import pull

    print(f"pulled {len(pull(_params(args), args.remote))} stage(s)' results")


def cmd_dvc_push(args) -> None:
    from ccreid.dvc_pipeline import push

    print(f"pushed {len(push(_params(args), args.remote))} stage(s)' results")


def cmd_dvc_apply(args) -> None:
    from ccreid.dvc_pipeline import apply

    done = apply(_params(args), args.experiments)
    print(f"applied {len(done['applied'])} stage(s): {' '.join(done['applied'])}")
    for line in done["kept"]:
        print(f"kept {line}")


def cmd_dvc_headline(args) -> None:
    from ccreid.dvc_pipeline import write_headline

    write_headline(args.dataset, args.exp, Path(args.out))


def cmd_config_list(args) -> None:
    params = _params(args)
    dataset = args.dataset or params.default.dataset
    params.dataset(dataset)
    width = max(len(exp) for exp in params.experiments + ["defaults"])  # the base column holds ids too
    print(f"{'id':>{width}}  {'base':>{width}}  {'reported (mAP / R1)':<24} note")
    for exp in params.experiments:
        entry = params.entry(exp)
        reported = entry.get("reported")
        numbers = f"{reported['dataset']} {reported['mAP']:.4f} / {reported['R1']:.4f}" if reported else "-"
        same = _same_training_note(params, dataset, exp)
        note = " ".join(part for part in (entry.get("note", ""), f"[{same}]" if same else "") if part)
        print(f"{exp:>{width}}  {str(entry.get('base', 'defaults')):>{width}}  {numbers:<24} {note}")
    tables = ", ".join(f"{name} ({len(ids)})" for name, ids in params.tables.items())
    print(f"\ntables: {tables}; `snakemake --cores all` builds {params.default.table} on {params.default.dataset}")
    if params.unlisted():
        print(f"in no table (a target or a table away): {', '.join(params.unlisted())}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ccreid", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)

    def benchmark_option(p) -> None:
        p.add_argument(
            "--benchmark",
            action="store_true",
            help="write the job's run time and peak memory to its Snakemake benchmark file under logs/ "
            "(DVC's stages; Snakemake writes its own)",
        )

    def stage(name: str, func, help_text: str, exp: bool = True, job: bool = False):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--dataset", required=True, help="a data set named in params.yaml datasets:")
        if exp:
            p.add_argument("--exp", required=True, help="an experiment id from params.yaml experiments:")
        if job:
            benchmark_option(p)
        p.set_defaults(func=func)
        return p

    p = stage("synth", cmd_synth, "write the synthetic data set in PRCC layout", exp=False, job=True)
    p.add_argument("--out", help="output root (default: the data set's root)")
    p = stage("prepare", cmd_prepare, "parse, check, decode and resize a data set", exp=False, job=True)
    p.add_argument("--out", help="prepared folder (default: data/prepared/<dataset>)")
    p.add_argument("--check", action="store_true", help="parse and validate only; write nothing")
    p = stage("train", cmd_train, "train an experiment's model", job=True)
    p.add_argument("--prepared")
    p.add_argument("--out", help="model file (default: results/<ds>/<owner>/model.pt)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when present)")
    p = sub.add_parser("weights", help="fetch and check ImageNet weights into data/weights/ (once)")
    p.add_argument("--backbone", help="a backbone of params.yaml model.backbone")
    p.add_argument("--dataset", help="with --exp: the weights this run's training reads")
    p.add_argument("--exp")
    p.add_argument("--record", help="write the run's weight file and SHA-256 here (JSON)")
    benchmark_option(p)
    p.set_defaults(func=cmd_weights)
    p = stage("extract", cmd_extract, "embed the evaluation splits into features.h5", job=True)
    p.add_argument("--prepared")
    p.add_argument("--model")
    p.add_argument("--out")
    p.add_argument("--device")
    p = stage("evaluate", cmd_evaluate, "evaluate every protocol into metrics.json", job=True)
    p.add_argument("--features")
    p.add_argument("--out")
    p.add_argument("--device")

    p = stage("report", cmd_report, "the ablation table of a data set: md, csv, html, plots", exp=False)
    p.add_argument("--results", help="folder of the experiments' results (default: results/<dataset>)")
    p.add_argument("--out", help="output folder (default: the results folder)")
    p.add_argument("--experiments", nargs="+", help="only these experiments (default: the registry)")
    p.add_argument("--cmc", nargs="+", help="experiments drawn in cmc.png")
    p.add_argument(
        "--prepared", help="prepared folder for the ranked lists (default: data/prepared/<dataset> if there)"
    )
    p.add_argument("--logs", default=str(paths.LOGS_DIR), help="folder of the jobs' benchmark files (default: logs)")

    p = stage("rank-list", cmd_rank_list, "draw an experiment's ranked lists (one PNG per protocol)")
    p.add_argument("--against", help="another experiment (e.g. the base) drawn beside it on the same queries")
    p.add_argument("--queries", type=int, default=8, help="queries drawn (default: 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the query sample (default: 0)")
    p.add_argument("--prepared", help="prepared folder (default: data/prepared/<dataset>)")
    p.add_argument("--out", help="output folder (default: results/<dataset>/<exp>/ranked)")

    p = sub.add_parser("check", help="build what runs train with and check every member's contract (writes nothing)")
    p.add_argument("--dataset", required=True, help="a data set named in params.yaml datasets:")
    p.add_argument("runs", nargs="*", help="runs (<exp> or <exp>@<seed>; default: the default table's)")
    p.set_defaults(func=cmd_check)
    p = stage("smoke", cmd_smoke, "train a few batches and score a few identities: a new module end to end in seconds")
    p.add_argument("--batches", type=int, default=2, help="training batches (default: 2)")
    p.add_argument("--prepared", help="prepared folder (default: data/prepared/<dataset>)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when present)")

    p = stage("queue", cmd_queue, "queue registry entries as DVC experiments (`dvc queue start` runs them)", exp=False)
    p.add_argument("--experiments", nargs="+", help="only these experiments (default: the default table's)")

    config = sub.add_parser("config", help="inspect params.yaml").add_subparsers(dest="action", required=True)
    show = config.add_parser("show", help="print an experiment's resolved config")
    show.add_argument("exp")
    show.add_argument("--dataset", help="also apply this data set's schedule scale")
    show.set_defaults(func=cmd_config_show)
    diff = config.add_parser("diff", help="the resolved config keys that differ between two experiments")
    diff.add_argument("old")
    diff.add_argument("new")
    diff.add_argument("--dataset", help="compare the configs run on this data set (its overrides and scale)")
    diff.set_defaults(func=cmd_config_diff)
    write = config.add_parser(
        "write", help="DVC's config stage: the config each stage of each run reads, one JSON each"
    )
    write.add_argument("--out", default="results/dvc_config", help="folder (default: results/dvc_config)")
    write.set_defaults(func=cmd_config_write)
    listing = config.add_parser("list", help="the registry: ids, bases, notes, reported numbers, shared trainings")
    listing.add_argument("--dataset", help="name shared trainings on this data set (default: default.dataset)")
    listing.set_defaults(func=cmd_config_list)

    dvc = sub.add_parser("dvc", help="results through DVC: record, push, pull, apply (docs/scaling.md)")
    actions = dvc.add_subparsers(dest="action", required=True)
    drop_help = "runs that left params.yaml (as the refusal names them: prcc-214) whose results DVC may stop tracking; their files stay"
    p = actions.add_parser("sync", help="write dvc_runs.yaml, the runs dvc.yaml iterates over, from params.yaml")
    p.add_argument("--drop", nargs="+", default=[], metavar="RUN", help=drop_help)
    p.set_defaults(func=cmd_dvc_sync)
    p = actions.add_parser("record", help="record results Snakemake built in dvc.lock and DVC's cache (runs nothing)")
    p.add_argument("--drop", nargs="+", default=[], metavar="RUN", help=drop_help)
    p.set_defaults(func=cmd_dvc_record)
    for name, func, what in (("push", cmd_dvc_push, "to"), ("pull", cmd_dvc_pull, "from")):
        p = actions.add_parser(name, help=f"every result dvc.lock records, {what} a DVC remote")
        p.add_argument("--remote", help="a remote of `dvc remote list` (default: the default remote)")
        p.set_defaults(func=func)
    p = actions.add_parser("apply", help="bring finished experiments' results into the workspace, keeping its own")
    p.add_argument("experiments", nargs="+", help="experiment names (`dvc exp show`)")
    p.set_defaults(func=cmd_dvc_apply)
    p = actions.add_parser("headline", help="DVC's headline stage: the selected run's metrics for `dvc exp show`")
    p.add_argument("--dataset", required=True)
    p.add_argument("--exp", required=True)
    p.add_argument("--out", default="metrics.json")
    p.set_defaults(func=cmd_dvc_headline)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except CCReIDError as error:
        print(f"ccreid: error: {error}", file=sys.stderr)
        if isinstance(error, DiskFullError):
            # HDF5 (2.0) crashes when it frees the objects of a file whose write failed, which
            # a normal interpreter exit would do: the temporaries are gone already, so leave now.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(2)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The import graph read from the sources (AST), against the layers of docs/architecture.md:
stages → {engine, evaluation, reporting, models, data} → core; no stage imports another, no
cycles, and each stage's code closure (what its fingerprint and its Snakemake rule hash) holds
only code that can change its output."""

from __future__ import annotations

from ccreid.core.fingerprint import _PACKAGE_ROOT, _imported_ccreid_modules
from ccreid.core.stage_code import MONITORS, stage_module

# Every `ccreid` subcommand's stage module (stages/<name>.py). Kept here, not in core/stage_code.py:
# every stage imports that module, so a new stage listed there would rebuild every result.
STAGES = ("synth", "prepare", "weights", "train", "extract", "evaluate", "report", "rank_list")

# A layer may import its own and lower layers only. engine and evaluation do not see each other:
# training gets its monitors by name from the stage (ccreid.core.stage_code.MONITORS).
LAYERS = {
    "core": 0,
    "data": 1,
    "models": 1,
    "engine": 2,
    "evaluation": 2,
    "reporting": 3,
    "stages": 4,
    "dvc_pipeline": 4,  # DVC's runs table and the `ccreid dvc` commands: over core and data, no stage
    "cli": 5,
    "__main__": 6,
}

# Each stage's closure outside models/, pinned: a module that joins one joins on purpose. Training
# and extraction hold every model module, the other stages none (`weights` reads only core.weights).
CORE = {"core.atomic", "core.errors", "core.fingerprint", "core.paths", "core.sections", "core.stage_code"}
CLOSURES = {
    "synth": CORE | {"data.layouts.base", "data.layouts.files", "data.layouts.prcc", "data.synthetic"},
    "prepare": CORE
    | {"core.config", "data.preparation", "data.layouts", "data.layouts.validate"}
    | {
        f"data.layouts.{name}"
        for name in ("base", "celeb", "deepchange", "files", "last", "ltcc", "naming", "prcc", "vcclothes")
    },
    "weights": {"core.atomic", "core.errors", "core.weights"},
    "train": CORE
    | {
        "core.devices",
        "core.distributed",
        "core.weights",
        "data.augment",
        "data.images",
        "data.layouts.base",
        "data.loader",
        "data.prepared",
        "data.sampler",
        "engine.losses",
        "engine.trainer",
        "engine.training_log",
    },
    "extract": CORE
    | {
        "core.devices",
        "core.weights",
        "data.augment",
        "data.images",
        "data.layouts.base",
        "data.prepared",
        "evaluation.embedding",
        "evaluation.features",
    },
    "evaluate": CORE
    | {
        "core.devices",
        "data.layouts.base",
        "evaluation.features",
        "evaluation.metrics",
        "evaluation.rerank",
        "evaluation.scoring",
    },
    "report": {
        "core.atomic",
        "core.config",
        "core.errors",
        "core.paths",
        "core.sections",
        "evaluation.stats",
        "reporting.ablation",
        # The report draws ranked lists (the ranking evaluation scores, from the prepared images),
        # config differences and training curves.
        "data.images",
        "data.layouts.base",
        "data.prepared",
        "evaluation.features",
        "evaluation.metrics",
        "evaluation.rerank",
        "reporting.config_diff",
        "reporting.ranked_lists",
        "reporting.training_curves",
        # and each job's cost, from the benchmark files.
        "core.benchmark",
        "core.fingerprint",
        "reporting.job_costs",
    },
    # Ranked lists rank the gallery as evaluation does: the metrics and the prepared images.
    "rank_list": {
        "core.atomic",
        "core.errors",
        "core.paths",
        "data.images",
        "data.layouts.base",
        "data.prepared",
        "evaluation.features",
        "evaluation.metrics",
        "evaluation.rerank",
        "reporting.ranked_lists",
    },
}
WITH_MODELS = {"train", "extract"}
# What must never be in a stage's closure: evaluation code does not retrain or re-extract,
# training code does not re-evaluate, the report never rebuilds a result.
NOT_IN_CLOSURE = {
    "train": {"evaluation", "reporting", "stages.extract", "stages.evaluate", "stages.report", "cli"},
    "extract": {
        "engine",
        "reporting",
        "evaluation.metrics",
        "evaluation.rerank",
        "evaluation.stats",
        "evaluation.scoring",
        "evaluation.validation",
        "cli",
    },
    "evaluate": {"engine", "models", "reporting", "evaluation.stats", "evaluation.validation", "cli"},
}


def all_modules() -> list[str]:
    names = []
    for path in sorted(_PACKAGE_ROOT.rglob("*.py")):
        parts = path.relative_to(_PACKAGE_ROOT.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def closure(*modules: str) -> set[str]:
    seen, todo = set(), list(modules)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(_imported_ccreid_modules(name) - seen)
    return seen


def short(name: str) -> str:
    return name.removeprefix("ccreid.")


def layer(name: str) -> str:
    return short(name).split(".")[0]


def test_every_module_is_in_a_layer():
    unplaced = [name for name in all_modules() if name != "ccreid" and layer(name) not in LAYERS]
    assert not unplaced, unplaced


def test_imports_go_down_the_layers_and_no_stage_imports_a_stage():
    wrong = []
    for name in all_modules():
        if name == "ccreid":
            continue
        for imported in _imported_ccreid_modules(name):
            if imported == "ccreid" or imported == name:
                continue
            if LAYERS[layer(imported)] > LAYERS[layer(name)]:
                wrong.append(f"{short(name)} imports {short(imported)} (a higher layer)")
            elif layer(name) != layer(imported) and LAYERS[layer(imported)] == LAYERS[layer(name)]:
                wrong.append(f"{short(name)} imports {short(imported)} (a sibling layer)")
            elif layer(name) == "stages" and layer(imported) == "stages" and imported != "ccreid.stages":
                wrong.append(f"stage {short(name)} imports stage {short(imported)}")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    graph = {name: _imported_ccreid_modules(name) - {name} for name in all_modules()}
    cycles = [
        (a, b)
        for a in graph
        for b in graph[a]
        if a in closure(b) and not (a.startswith(b + ".") or b.startswith(a + "."))
    ]
    assert not cycles, cycles


def test_every_stage_has_its_module():
    assert {stage_module(stage) for stage in STAGES} <= set(all_modules())


def test_stage_closures_are_the_pinned_ones():
    models = {short(m) for m in all_modules() if layer(m) == "models"}
    for stage, pinned in CLOSURES.items():
        found = {short(m) for m in closure(stage_module(stage))} - {f"stages.{stage}"}
        assert found - models == pinned, (stage, sorted((found - models) ^ pinned))
        if stage in WITH_MODELS:
            assert models - {"models"} <= found, (stage, sorted(models - found))
        elif stage not in WITH_MODELS:
            assert not found & models, (stage, sorted(found & models))


def test_stage_closures_hold_only_what_can_change_their_output():
    for stage, forbidden in NOT_IN_CLOSURE.items():
        names = {short(m) for m in closure(stage_module(stage))}
        hits = {f for f in forbidden if any(n == f or n.startswith(f + ".") for n in names)}
        assert not hits, (stage, sorted(hits))


def test_monitoring_brings_the_evaluation_code_into_training():
    monitored = {short(m) for m in closure(stage_module("train"), MONITORS)}
    assert {"evaluation.validation", "evaluation.metrics", "evaluation.embedding"} <= monitored

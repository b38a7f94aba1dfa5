"""The import graph read from the sources (AST), against the layers of docs/architecture.md:
stages → {engine, evaluation, reporting, models, data} → core; no stage imports another, no
cycles, and each stage's code closure (what its fingerprint and its Snakemake rule hash) holds
only code that can change its output."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from ccreid.core.fingerprint import _PACKAGE_ROOT, _imported_ccreid_modules
from ccreid.core.registry import KINDS, registry
from ccreid.core.stage_code import MONITORS, stage_module

# Every `ccreid` subcommand's stage module (stages/<name>.py). Kept here, not in core/stage_code.py:
# every stage imports that module, so a new stage listed there would rebuild every result.
STAGES = ("synth", "prepare", "weights", "train", "extract", "evaluate", "report", "rank_list", "check", "smoke")

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

# Each stage's closure, pinned: a module that joins one joins on purpose. No closure holds a
# registry member (those enter the code hash of the runs that select them: core/stage_code.py);
# training and extraction hold the shared model code, the other stages none of models/.
CORE = {
    "ccreid",
    "core.atomic",
    "core.errors",
    "core.fingerprint",
    "core.paths",
    "core.registry",
    "core.schema",
    "core.sections",
    "core.stage_code",
}
DATA = {"data.images", "data.layouts", "data.layouts.base", "data.prepared"}
MODELS = {
    "models",
    "models.base",
    "models.checkpoint",
    "models.heads",
    "models.members",
    "models.pretrained",
    "models.reid",
}
TRAINING = (
    CORE
    | DATA
    | MODELS
    | {
        "core.devices",
        "core.distributed",
        "core.gpu_claim",
        "core.weights",
        "data.augment",
        "data.loader",
        "data.normalization",
        "data.sampler",
        "engine.losses",
        "engine.losses.term",
        "engine.trainer",
        "engine.training_log",
    }
)
CLOSURES = {
    # synth writes the PRCC layout: the constants of its parser are part of what it writes.
    "synth": CORE | {"data.layouts", "data.layouts.base", "data.layouts.files", "data.layouts.prcc", "data.synthetic"},
    "prepare": CORE | {"data.preparation", "data.layouts", "data.layouts.base", "data.layouts.validate"},
    "weights": {"ccreid", "core.atomic", "core.errors", "core.registry", "core.schema", "core.weights"},
    "train": TRAINING,
    "extract": CORE
    | DATA
    | MODELS
    | {
        "core.devices",
        "core.gpu_claim",
        "core.weights",
        "data.normalization",
        "evaluation.embedding",
        "evaluation.features",
    },
    "evaluate": CORE
    | {
        "core.devices",
        "core.gpu_claim",
        "data.layouts",
        "data.layouts.base",
        "evaluation.features",
        "evaluation.metrics",
        "evaluation.rerank",
        "evaluation.scoring",
    },
    "report": {
        "ccreid",
        "core.atomic",
        "core.config",
        "core.errors",
        "core.paths",
        "core.registry",
        "core.schema",
        "core.sections",
        "evaluation.stats",
        "reporting.figures",
        "reporting.markup",
        "reporting.results",
        "reporting.table",
        "reporting.text",
        # The report draws ranked lists (the ranking evaluation scores, from the prepared images),
        # config differences and training curves.
        *DATA,
        "evaluation.features",
        "evaluation.metrics",
        "evaluation.rerank",
        "evaluation.scoring",
        "reporting.config_diff",
        "reporting.ranked_lists",
        "reporting.training_curves",
        # and each job's cost, from the benchmark files.
        "core.benchmark",
        "core.fingerprint",
        "reporting.job_costs",
    },
    # Ranked lists rank the gallery as evaluation does (its scorer) and show the prepared images.
    "rank_list": {
        "ccreid",
        "core.atomic",
        "core.errors",
        "core.paths",
        "core.registry",
        "core.schema",
        *DATA,
        "evaluation.features",
        "evaluation.metrics",
        "evaluation.rerank",
        "evaluation.scoring",
        "reporting.ranked_lists",
    },
    # Commands that write no result: what training builds, checked (check), and a few batches of it
    # scored (smoke).
    "check": TRAINING,
    "smoke": TRAINING | {"evaluation.embedding", "evaluation.metrics", "evaluation.rerank", "evaluation.scoring"},
}
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
    for stage, pinned in CLOSURES.items():
        found = {short(m) for m in closure(stage_module(stage))} - {f"stages.{stage}"}
        assert found == pinned, (stage, sorted(found ^ pinned))


def member_modules() -> set[str]:
    """Every module that defines a registry member (ccreid's own)."""
    members = registry()
    return {
        m.module
        for kind in KINDS
        for name in members.names(kind)
        if (m := members.member(kind, name)).plugin is None and m.hashed
    }


def test_no_stage_closure_holds_a_registry_member():
    """Members enter only the code hash of the runs that select them; the one exception is the
    PRCC parser, whose layout the synthetic set is written in."""
    assert len(member_modules()) >= 20  # the gates, blocks, backbones, poolings, loss terms, layouts
    for stage in STAGES:
        held = {short(m) for m in closure(stage_module(stage)) & member_modules()}
        assert held <= ({"data.layouts.prcc"} if stage == "synth" else set()), (stage, sorted(held))


def test_stage_closures_hold_only_what_can_change_their_output():
    for stage, forbidden in NOT_IN_CLOSURE.items():
        names = {short(m) for m in closure(stage_module(stage))}
        hits = {f for f in forbidden if any(n == f or n.startswith(f + ".") for n in names)}
        assert not hits, (stage, sorted(hits))


def test_monitoring_brings_the_evaluation_code_into_training():
    monitored = {short(m) for m in closure(stage_module("train"), MONITORS)}
    assert {"evaluation.validation", "evaluation.metrics", "evaluation.embedding"} <= monitored


def test_the_package_imports_no_torchvision():
    """Importing torchvision imports torch._dynamo, about 1.7 s of each process that builds a model
    (extraction's most of all): the ResNet blocks are ccreid's own (models/backbones/resnet.py)."""
    importers = []
    for path in sorted(_PACKAGE_ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            if any(name.split(".")[0] == "torchvision" for name in names):
                importers.append(f"{path.relative_to(_PACKAGE_ROOT)}:{node.lineno}")
    assert importers == []


# A file or folder name written as a literal (no spaces: messages and docstrings may name files):
# outputs, logs, data folders. Captions and the conda environment are the workflow's own files.
PATH_LITERAL = re.compile(
    r"""["'][^"'\s]*(?:\b(?:results|data|logs)/|\.(?:json|h5|pt|csv|png|md|html|log|tsv)\b)[^"'\s]*["']"""
)


def test_the_workflow_takes_every_file_name_from_core_paths():
    """One definition of each file name: a rule's paths come from ccreid.core.paths."""
    workflow = Path(__file__).resolve().parents[1] / "workflow"
    literals = [
        f"{source.relative_to(workflow)}:{number}: {line.strip()}"
        for source in [workflow / "Snakefile", *sorted((workflow / "rules").glob("*.smk"))]
        for number, line in enumerate(source.read_text().splitlines(), 1)
        if not line.lstrip().startswith(("#", "patterns="))  # which files a report folder shows
        for literal in PATH_LITERAL.findall(line.split(" #")[0])
        if not literal.strip("\"'f").startswith(("../envs/", "../report/"))
    ]
    assert not literals, "\n".join(literals)

"""The import graph read from the sources (AST): no cycles, and each stage's code closure (what
its fingerprint and its Snakemake rule hash) holds only code that can change its output."""

from __future__ import annotations

from ccreid.fingerprint import _PACKAGE_ROOT, _imported_ccreid_modules

STAGES = ("synth", "prepare", "train", "extract", "evaluate", "report")
# What must never rebuild a stage's output: evaluation code does not retrain or re-extract,
# training code does not re-evaluate.
NOT_IN_CLOSURE = {
    "train": {"evaluate", "rerank", "report", "stats", "extract", "cli"},
    "extract": {"train", "evaluate", "rerank", "report", "stats", "losses", "cli"},
    "evaluate": {"train", "extract", "report", "stats", "models", "cli"},
}


def all_modules() -> list[str]:
    names = []
    for path in sorted(_PACKAGE_ROOT.rglob("*.py")):
        parts = path.relative_to(_PACKAGE_ROOT.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def closure(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(_imported_ccreid_modules(name) - seen)
    return seen


def test_no_import_cycles():
    graph = {name: _imported_ccreid_modules(name) - {name} for name in all_modules()}
    cycles = [(a, b) for a in graph for b in graph[a]
              if a in closure(b) and not (a.startswith(b + ".") or b.startswith(a + "."))]
    assert not cycles, cycles


def test_stage_closures_hold_only_what_can_change_their_output():
    for stage, forbidden in NOT_IN_CLOSURE.items():
        short = {name.removeprefix("ccreid.").split(".")[0] for name in closure(f"ccreid.{stage}")}
        assert not short & forbidden, (stage, sorted(short & forbidden))

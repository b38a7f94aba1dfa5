"""What changed between two experiments: the keys of their resolved configs (after inheritance
and, with a data set, its overrides and schedule scale) that differ, old → new. `ccreid config
diff` prints it and each report row links to it (docs/report.md)."""

from __future__ import annotations

from typing import Any

# Keys that name the run rather than configure it.
IGNORED = ("experiment",)


def changes(old: dict, new: dict, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, old, new) of every leaf that differs; a key on one side only reads None on
    the other. Lists compare whole."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        path = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(changes(a, b, path + "."))
        elif a != b and path not in IGNORED:
            out.append((path, a, b))
    return out


def experiment_changes(params, old: str, new: str, dataset: str | None = None) -> list[tuple[str, Any, Any]]:
    """The resolved config difference from experiment `old` to `new` (on `dataset` when given)."""
    if dataset is None:
        before, after = params.resolve(old), params.resolve(new)
    else:
        before, after = params.run_config(dataset, old), params.run_config(dataset, new)
    return changes(before.model_dump(mode="json"), after.model_dump(mode="json"))


def _value(value: Any) -> str:
    return "(unset)" if value is None else repr(value)


def change_lines(found: list[tuple[str, Any, Any]]) -> list[str]:
    return [f"{key}: {_value(a)} → {_value(b)}" for key, a, b in found]

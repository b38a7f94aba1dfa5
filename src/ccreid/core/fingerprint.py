"""What a stage consumed — input hashes, the config it read, its code — recorded beside its output.

Snakemake (timestamps + params) and DVC (content hashes + dvc.lock) do not see each other's runs.
Each stage therefore writes ``<output>.fingerprint.json`` after its output and returns at once
when asked to rebuild an output whose recorded fingerprint equals the current one.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
from functools import cache
from pathlib import Path

from ccreid.core.atomic import atomic_write_text
from ccreid.core.errors import CCReIDError
from ccreid.core.paths import FOLDER_RECORD, RECORD_SUFFIX
from ccreid.core.sections import canonical_json

_CHUNK = 1 << 20


def hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def hash_tree(root: Path) -> str:
    """Content hash of every file under `root` (names and bytes), independent of timestamps.
    Hidden files are left out, as from an output's sizes: Snakemake's .snakemake_timestamp in a
    folder it built must not make the same data look different to DVC's run of the next stage."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(root).rglob("[!.]*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hash_file(path).encode())
    return digest.hexdigest()


def hash_input(path: Path) -> str:
    path = Path(path)
    if not path.exists():
        raise CCReIDError(
            f"{path}: not found; build it first with the stage that writes it "
            "(`snakemake <this output>` builds every input in order)"
        )
    return hash_tree(path) if path.is_dir() else hash_file(path)


_PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # src/ccreid


def _module_file(name: str) -> Path | None:
    """The source file of a ccreid module name, or None when the name is not a module."""
    parts = name.split(".")
    if parts[0] != "ccreid":
        return None
    base = _PACKAGE_ROOT.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _existing_module_file(name: str) -> Path:
    """The source file of a module known to be a ccreid module (a stage's own, or one it imports)."""
    source = _module_file(name)
    assert source is not None, f"{name} is not a ccreid module"
    return source


@cache
def _file_code(source: Path, package: str) -> tuple[frozenset[str], str]:
    """A source file's ccreid imports and its behaviour, from one parse: each stage's closure
    shares most modules, and planning hashes every stage (a no-op rerun's cost)."""
    tree = ast.parse(source.read_text())
    return frozenset(_imports_in(tree, package)), _behaviour(tree)


def _module_code(name: str) -> tuple[frozenset[str], str]:
    source = _existing_module_file(name)
    return _file_code(source, name if source.name == "__init__.py" else name.rpartition(".")[0])


def _imported_ccreid_modules(name: str) -> frozenset[str]:
    return _module_code(name)[0]


def _statements(node: ast.AST):
    """Every statement under `node`, at any depth, without walking into expressions (most of a
    tree): imports and definitions (which own the docstrings) are statements."""
    for field in node._fields:
        for child in getattr(node, field) if isinstance(getattr(node, field), list) else ():
            if isinstance(child, (ast.stmt, ast.excepthandler, ast.match_case)):
                yield child
                yield from _statements(child)


def _imports_in(tree: ast.Module, package: str) -> set[str]:
    found: set[str] = set()
    for node in _statements(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative import: resolve against this module's package
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{anchor}.{module}".rstrip(".")
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    # Importing a module runs its parent packages' __init__ first: they are part of what runs.
    found |= {m.rsplit(".", depth)[0] for m in set(found) for depth in range(1, m.count(".") + 1)}
    return {m for m in found if _module_file(m) is not None}


def _behaviour(tree: ast.Module) -> str:
    """The parsed code without docstrings: comments, docstrings and formatting cannot change what
    a stage computes, so editing them rebuilds nothing. (Strips `tree`'s docstrings in place.)"""
    for node in [tree, *_statements(tree)]:
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, include_attributes=False)


@cache
def code_hash(*modules: str, files: tuple[tuple[str, Path], ...] = ()) -> str:
    """Hash of the modules' code and of every ccreid module they import, transitively, each
    without comments, docstrings and formatting (docs/architecture.md, "Code hashes"). `files`:
    source files outside the package (params.yaml's plugins), each as (its name in params.yaml,
    its path): hashed under that name, with the ccreid modules it imports."""
    plugin_code = {key: _file_code(path, "") for key, path in files}
    seen: set[str] = set()
    todo = [*modules, *(name for imports, _ in plugin_code.values() for name in imports)]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(_imported_ccreid_modules(name) - seen)
    digest = hashlib.sha256()
    for name in sorted(seen):
        digest.update(name.encode() + b"\0")
        digest.update(_module_code(name)[1].encode())
    for key in sorted(plugin_code):
        digest.update(b"plugin\0" + key.encode() + b"\0")
        digest.update(plugin_code[key][1].encode())
    return digest.hexdigest()[:16]


def make_fingerprint(stage: str, code: str, config: dict, inputs: dict[str, Path]) -> dict:
    """What a stage's output is a function of: its code hash (ccreid.core.stage_code), its config
    and the hashes of its inputs."""
    return {
        "stage": stage,
        "code": code,
        "config": json.loads(canonical_json(config)),
        "inputs": {name: hash_input(path) for name, path in sorted(inputs.items())},
    }


def record_path(output: Path) -> Path:
    """Where an output's fingerprint lives: inside a folder output, beside a file output."""
    output = Path(output)
    if output.is_dir():
        return output / FOLDER_RECORD
    return output.with_name(output.name + RECORD_SUFFIX)


def _sizes(output: Path) -> dict[str, int]:
    """Bytes of each file of the output, recorded with its fingerprint: an output truncated or
    partly deleted after it was built (a copy cut short, a cleaner) no longer passes as fresh.
    Hidden files are not the output's own (Snakemake adds .snakemake_timestamp to a folder)."""
    output = Path(output)
    if not output.is_dir():
        return {output.name: output.stat().st_size}
    return {
        p.relative_to(output).as_posix(): p.stat().st_size
        for p in sorted(output.rglob("[!.]*"))
        if p.is_file() and p != output / FOLDER_RECORD
    }


def is_fresh(output: Path, fingerprint: dict) -> bool:
    """True when `output` exists, whole, and was built from exactly this fingerprint."""
    path = record_path(output)
    if not Path(output).exists() or not path.is_file():
        return False
    try:
        return json.loads(path.read_text()) == {**fingerprint, "sizes": _sizes(output)}
    except (OSError, ValueError):  # unreadable, not text, not JSON: not a record, so rebuild
        return False


def record(output: Path, fingerprint: dict) -> None:
    """Write the fingerprint after `output` is complete (a folder output must exist already)."""
    text = json.dumps({**fingerprint, "sizes": _sizes(output)}, indent=1, sort_keys=True) + "\n"
    atomic_write_text(record_path(output), text)


@contextlib.contextmanager
def rebuilding(output: Path, fingerprint: dict):
    """Build a file output: its old record goes before the output changes, the new one comes
    after it is complete. A kill in between leaves an output with no record, which the rerun
    rebuilds; without this, a new output under an old record could later pass for fresh."""
    record_path(output).unlink(missing_ok=True)
    yield
    record(output, fingerprint)


def differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts (for 'what changed' messages)."""
    keys = sorted(set(old) | set(new))
    out = []
    for key in keys:
        a, b = old.get(key), new.get(key)
        path = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(differences(a, b, path + "."))
        elif a != b:
            out.append(f"{path}: {a!r} -> {b!r}")
    return out

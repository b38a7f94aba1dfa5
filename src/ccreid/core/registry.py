"""Registries of named members: the extension points params.yaml selects by name (docs/extending.md).

A member is a class or function marked with its kind's decorator (`@gate("se_avgmax")`), in a
module of its kind's package (`KINDS`: src/ccreid/models/gates/ for gates) or in a plugin file
that params.yaml names under `plugins:`. Members are found by reading the sources, not by importing
them: params.yaml is checked — every name and its arguments — before anything imports torch, and
a run's code hash takes the modules of the members its config selects and no others
(core/stage_code.py). A member is imported when something builds it (`Registry.load`).

Augmentations are also found by name in `kornia.augmentation` (its 2-D image augmentations), read
the same way from Kornia's installed sources.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from ccreid.core.errors import CCReIDError

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # src/ccreid
MARK = "__ccreid_member__"  # ((kind, name), ...) on each decorated object, checked when it is loaded
PLUGIN_PREFIX = "ccreid_plugin_"  # plugin files import as ccreid_plugin_<file stem>_<hash of its path>


@dataclass(frozen=True)
class Kind:
    """One extension point: where its members live, the params.yaml key that names them, and the
    arguments ccreid passes every member itself (its contract; params.yaml gives the others)."""

    name: str
    package: str | None
    key: str
    contract: tuple[str, ...]


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("backbone", "ccreid.models.backbones", "model.backbone", ("last_stride", "width")),
        Kind("block", "ccreid.models.blocks", "model.multiscale.block", ("channels", "gate", "blocks")),
        Kind("gate", "ccreid.models.gates", "model.multiscale.gate", ("channels", "reduction")),
        Kind("pooling", "ccreid.models.poolings", "model.pooling", ()),
        Kind("loss", "ccreid.engine.losses", "loss.<term>", ("context",)),
        Kind("augmentation", None, "augment.extra", ()),
        Kind("layout", "ccreid.data.layouts", "datasets.<name>.layout", ("root",)),
    )
}
KORNIA = "kornia.augmentation"

Decorated = TypeVar("Decorated")


def _marker(kind: str) -> Callable[[str], Callable[[Decorated], Decorated]]:
    def register(name: str) -> Callable[[Decorated], Decorated]:
        def mark(obj: Decorated) -> Decorated:
            setattr(obj, MARK, (*getattr(obj, MARK, ()), (kind, name)))  # one object may take several names
            return obj

        return mark

    register.__name__ = kind
    register.__doc__ = f'`@{kind}("name")`: registers the {kind} that params.yaml `{KINDS[kind].key}` names so.'
    return register


# The decorators, one per kind: read from the sources by name, so a member's module imports them
# from here under these names (`from ccreid.core.registry import gate`).
backbone = _marker("backbone")
block = _marker("block")
gate = _marker("gate")
pooling = _marker("pooling")
loss = _marker("loss")
augmentation = _marker("augmentation")
layout = _marker("layout")


@dataclass(frozen=True)
class Member:
    """Where one registered name is defined, and the arguments it accepts (from its source)."""

    kind: str
    name: str
    module: str  # the importable module name
    attribute: str
    source: Path
    line: int
    plugin: str | None  # the plugin file as params.yaml names it; None for ccreid's and Kornia's own
    signature: inspect.Signature | None  # None: not readable from the source, checked when built

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"

    @property
    def hashed(self) -> bool:
        """Its code is part of the code hash of the runs that select it (Kornia is a pinned package)."""
        return self.module != KORNIA


def member_ref(value: Any) -> tuple[str, dict[str, Any]]:
    """A params.yaml member reference: a name, or a mapping `{name: ..., <argument>: value, ...}`."""
    if isinstance(value, str):
        return value, {}
    if isinstance(value, Mapping) and isinstance(value.get("name"), str):
        return value["name"], {key: item for key, item in value.items() if key != "name"}
    raise CCReIDError(f"{value!r}: expected a member name, or a mapping with `name:` and its arguments")


# --- reading members from sources --------------------------------------------------------------
def _decorator_kind(node: ast.expr) -> tuple[str, str] | None:
    """(kind, name) of a `@kind("name")` / `@registry.kind("name")` decorator, else None."""
    if not (isinstance(node, ast.Call) and len(node.args) == 1 and not node.keywords):
        return None
    func, arg = node.func, node.args[0]
    kind = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
    if kind in KINDS and isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return kind, arg.value
    return None


def _signature(args: ast.arguments, drop_first: bool) -> inspect.Signature:
    """The parameters of a def, read from its AST (defaults are not evaluated: only their presence
    matters to binding)."""
    parameters: list[inspect.Parameter] = []
    positional = [*args.posonlyargs, *args.args]
    defaults = [inspect.Parameter.empty] * (len(positional) - len(args.defaults)) + [...] * len(args.defaults)
    for index, (arg, default) in enumerate(zip(positional, defaults)):
        if drop_first and index == 0:
            continue
        kind = (
            inspect.Parameter.POSITIONAL_ONLY
            if index < len(args.posonlyargs)
            else inspect.Parameter.POSITIONAL_OR_KEYWORD
        )
        parameters.append(inspect.Parameter(arg.arg, kind, default=default))
    if args.vararg is not None:
        parameters.append(inspect.Parameter(args.vararg.arg, inspect.Parameter.VAR_POSITIONAL))
    for arg, kw_default in zip(args.kwonlyargs, args.kw_defaults):
        default = inspect.Parameter.empty if kw_default is None else ...
        parameters.append(inspect.Parameter(arg.arg, inspect.Parameter.KEYWORD_ONLY, default=default))
    if args.kwarg is not None:
        parameters.append(inspect.Parameter(args.kwarg.arg, inspect.Parameter.VAR_KEYWORD))
    return inspect.Signature(parameters)


def _class_signature(node: ast.ClassDef, classes: Mapping[str, ast.ClassDef]) -> inspect.Signature | None:
    """The constructor's parameters: its own __init__, else the nearest base's found in `classes`;
    a class with neither takes none (nn.Module's own __init__); None when a base is not readable."""
    for item in node.body:
        if isinstance(item, ast.FunctionDef) and item.name == "__init__":
            return _signature(item.args, drop_first=True)
    for base in node.bases:
        name = base.id if isinstance(base, ast.Name) else base.attr if isinstance(base, ast.Attribute) else ""
        if name in classes:
            return _class_signature(classes[name], classes)
        if name not in {"Module", "object", "ABC"}:
            return None
    return inspect.Signature([])


def _parse(source: Path) -> ast.Module:
    try:
        return ast.parse(source.read_text(), filename=str(source))
    except SyntaxError as error:
        raise CCReIDError(f"{source}:{error.lineno}: not valid Python ({error.msg}); fix it or remove it") from None
    except (OSError, UnicodeDecodeError) as error:
        raise CCReIDError(f"{source}: cannot be read ({error})") from None


@cache
def _members_in(source: Path, module: str, plugin: str | None) -> tuple[Member, ...]:
    """Every decorated top-level class or function of one source file."""
    tree = _parse(source)
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    found = []
    for node in tree.body:
        if not isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            continue
        for decorator in node.decorator_list:
            marked = _decorator_kind(decorator)
            if marked is None:
                continue
            signature = (
                _class_signature(node, classes) if isinstance(node, ast.ClassDef) else _signature(node.args, False)
            )
            found.append(Member(*marked, module, node.name, source, node.lineno, plugin, signature))
    return tuple(found)


def _package_files(package: str) -> list[tuple[Path, str]]:
    folder = PACKAGE_ROOT.joinpath(*package.split(".")[1:])
    return [(path, f"{package}.{path.stem}") for path in sorted(folder.glob("*.py")) if path.name != "__init__.py"]


@cache
def _kornia_augmentations() -> tuple[Member, ...]:
    """Kornia's 2-D image augmentations by class name, with their constructors' parameters read
    from its sources (the names `kornia.augmentation` imports from its `_2d` package; the mixing
    ones, which need labels, left out)."""
    spec = importlib.util.find_spec("kornia")
    if spec is None or spec.origin is None:
        return ()
    folder = Path(spec.origin).parent / "augmentation"
    exported: list[str] = []
    for node in _parse(folder / "__init__.py").body:
        if isinstance(node, ast.ImportFrom) and node.module == f"{KORNIA}._2d":
            exported += [alias.name for alias in node.names]
    classes: dict[str, tuple[Path, ast.ClassDef]] = {}
    for path in sorted((folder / "_2d").rglob("*.py")):
        for node in _parse(path).body:
            if isinstance(node, ast.ClassDef):
                classes.setdefault(node.name, (path, node))
    nodes = {name: node for name, (_, node) in classes.items()}

    def mixes(node: ast.ClassDef) -> bool:
        bases = [base.id for base in node.bases if isinstance(base, ast.Name)]
        return "MixAugmentationBaseV2" in bases or any(mixes(nodes[b]) for b in bases if b in nodes)

    members = []
    for name in exported:
        path, definition = classes.get(name, (folder, None))
        if definition is not None and not mixes(definition):
            signature = _class_signature(definition, nodes)
            members.append(Member("augmentation", name, KORNIA, name, path, definition.lineno, None, signature))
    return tuple(members)


class Registry:
    """Every member of every kind: ccreid's packages, then the plugin files (paths relative to
    `root`, the folder of params.yaml), then Kornia's augmentations. A name registered twice for
    one kind is an error naming both places."""

    def __init__(self, plugins: Iterable[str] = (), root: Path = Path(".")):
        self.root = Path(root)
        self.plugins = tuple(plugins)
        self._members: dict[str, dict[str, Member]] = {kind: {} for kind in KINDS}
        for kind in KINDS.values():
            for path, module in _package_files(kind.package) if kind.package else ():
                self._add(member for member in _members_in(path, module, None) if member.kind == kind.name)
        for plugin in self.plugins:
            path = self.root / plugin
            if not path.is_file():
                raise CCReIDError(f"plugins: {plugin!r}: no such file (paths are relative to params.yaml's folder)")
            self._add(_members_in(path.resolve(), plugin_module(path.resolve()), plugin))
        self._with_kornia = False

    def _add(self, members: Iterable[Member]) -> None:
        for member in members:
            registered = self._members[member.kind]
            if member.name in registered:
                first = registered[member.name]
                raise CCReIDError(
                    f"{member.kind} {member.name!r} is registered twice: at {first.where} and at {member.where}; "
                    "rename one of them"
                )
            registered[member.name] = member

    def _kind(self, kind: str) -> dict[str, Member]:
        """The members of `kind`; Kornia's sources are read the first time augmentations are asked
        for (most params.yaml loads never do: planning stays quick)."""
        if kind == "augmentation" and not self._with_kornia:
            self._with_kornia = True
            self._add(_kornia_augmentations())
        return self._members[kind]

    def names(self, kind: str) -> list[str]:
        return list(self._kind(kind))

    def member(self, kind: str, name: str, key: str | None = None) -> Member:
        """The member `name` of `kind`, or an error naming the key, the value and every valid name."""
        if name not in self._kind(kind):
            valid = [n for n, m in self._members[kind].items() if m.module != KORNIA]
            kornia = " or any class of kornia.augmentation" if kind == "augmentation" else ""
            raise CCReIDError(
                f"key '{key or KINDS[kind].key}' = {name!r}: no {kind} of that name; "
                f"valid {kind}s: {', '.join(valid) or '(none registered)'}{kornia} (docs/extending.md)"
            )
        return self._members[kind][name]

    def check_arguments(self, member: Member, arguments: Mapping[str, Any], key: str) -> None:
        """Stop when the member would refuse these arguments (with its contract's own)."""
        if member.signature is None:
            return
        contract = KINDS[member.kind].contract if member.module != KORNIA else ()
        given = {name: None for name in contract} | dict(arguments)
        try:
            member.signature.bind(**given)
        except TypeError as error:
            takes = ", ".join(p for p in member.signature.parameters if p not in contract) or "no arguments"
            raise CCReIDError(
                f"key '{key}': {member.kind} {member.name!r} ({member.where}) does not accept "
                f"{sorted(arguments) or 'the arguments ccreid passes every ' + member.kind} ({error}); "
                f"it takes {takes}"
                + (f", after the ones ccreid passes every {member.kind}: {', '.join(contract)}" if contract else "")
            ) from None

    def load(self, member: Member) -> Any:
        """Import the member's module and return the decorated object."""
        try:
            if member.plugin is not None:
                module = _import_plugin(member.module, member.source)
            else:
                module = importlib.import_module(member.module)
        except CCReIDError:
            raise
        except Exception as error:  # noqa: BLE001 — any failure of a user's module at import
            raise CCReIDError(
                f"{member.kind} {member.name!r}: its module {member.source} does not import "
                f"({type(error).__name__}: {error})"
            ) from None
        obj = getattr(module, member.attribute, None)
        if member.module != KORNIA and (member.kind, member.name) not in getattr(obj, MARK, ()):
            raise CCReIDError(
                f"{member.kind} {member.name!r}: {member.where} defines {member.attribute} under "
                f'`@{member.kind}("{member.name}")` but importing the module did not register it so; '
                "define members at the top level of their module"
            )
        return obj


def plugin_module(source: Path) -> str:
    """The module name a plugin file imports under: unique to its path (two projects' lab/gates.py
    in one process are two modules)."""
    digest = hashlib.sha256(str(source).encode()).hexdigest()[:12]
    return f"{PLUGIN_PREFIX}{source.stem.replace('-', '_')}_{digest}"


def _import_plugin(name: str, source: Path):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


@cache
def registry(plugins: tuple[str, ...] = (), root: str = ".") -> Registry:
    """The registry of a params.yaml's plugins, read once per process."""
    return Registry(plugins, Path(root))

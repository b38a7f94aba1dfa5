"""The docs name only code and files that exist.

Read as text (no import, no pipeline): README.md, every docs/*.md, benchmarks/README.md,
benchmarks/log/README.md, plugins/README.md, workflow/report/*.rst and CHANGELOG.md's
"Unreleased" section (the released sections are history: they name modules as they were then; so
do the dated files of benchmarks/log/, which are never edited). In them, each of these must exist:

1. a dotted name `ccreid.a.b[.name[.attribute]]`: its longest prefix that is a module or package
   of src/ccreid, then each further part defined there (a def, class or assignment at module
   level, then inside that class; a name a module only imports is not its own, except in a
   package's __init__), read with `ast`;
2. a path to the package, written from the repository (`src/ccreid/models/gates/`) or from
   src/ccreid (`evaluation/stats.py`, `models/gates/`, `core/`): every path whose first folder is
   one of the package's (core, data, models, engine, evaluation, reporting, stages), or
   `cli.py` / `dvc_pipeline.py`. The data folders `data/raw/`, `data/prepared/`, `data/weights/`
   are data, not code, and are left out, as are `results/...`, `logs/...`, `smoke/...`;
3. a repository file or folder under tests/, benchmarks/, workflow/, docs/, plugins/, .ci/, src/
   (a `*` matches as a glob; `<placeholder>` and `{a,b}` parts end the checked path);
4. a name after a module: `core/sections.py`: `train_section`, `EVAL_KEYS` (each name of the list
   defined in the file; in a .smk file, a def, rule or assignment), and a test as
   `tests/test_x.py::test_name[param]` (the function, or a glob of one; `…::name` continues the
   last test file the same doc named);
5. `Class.attribute` where Class is a class of src/ccreid (`Params.run_config`): the attribute
   is defined in that class;
6. a relative Markdown link `[text](path#anchor)`: the file, and the anchor as a heading of it;
7. a section named by its title after a Markdown file: `benchmarks/README.md, "Default run"` (or
   `[docs/x.md](...), "Title"`): a heading of that file, or a list item's bold label
   (`- **Intervals**`), begins with that title.

Not checked: a path followed by a line number (`models/img_resnet.py:11`) cites another project's
code (CAL's, docs/recipe.md), and the files docs/extending.md tells the reader to write
(`EXAMPLE_FILES`)."""

from __future__ import annotations

import ast
import fnmatch
import re
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "ccreid"
SUBPACKAGES = ("core", "data", "models", "engine", "evaluation", "reporting", "stages")
REPO_FOLDERS = ("tests", "benchmarks", "workflow", "docs", "plugins", ".ci", "src")
DATA_FOLDERS = ("data/raw", "data/prepared", "data/weights")

# docs/extending.md's worked examples: a file the reader writes, in plugins/ or in the package.
EXAMPLE_FILES = {
    "plugins/eca.py",
    "plugins/eca_gate.py",
    "plugins/dilated.py",
    "plugins/center.py",
    "plugins/convnext.py",
    "plugins/mylab.py",
    "src/ccreid/models/gates/eca.py",
    "src/ccreid/models/blocks/dilated.py",
    "src/ccreid/engine/losses/center.py",
    "src/ccreid/models/backbones/convnext.py",
    "src/ccreid/data/layouts/mylab.py",
}


def documents() -> dict[str, str]:
    """Each checked doc's text, by its path from the repository root."""
    paths = [REPO / "README.md", REPO / "benchmarks" / "README.md", REPO / "benchmarks" / "log" / "README.md"]
    paths += [REPO / "plugins" / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    paths += sorted((REPO / "workflow" / "report").glob("*.rst"))
    docs = {str(path.relative_to(REPO)): path.read_text(encoding="utf-8") for path in paths if path.is_file()}
    changelog = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    unreleased = re.search(r"^## Unreleased\b.*?(?=^## |\Z)", changelog, re.S | re.M)
    docs["CHANGELOG.md (Unreleased)"] = unreleased.group(0) if unreleased else ""
    return docs


# --- what the package defines, read with ast -------------------------------------------------


@cache
def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def bound_names(body: list[ast.stmt], imports: bool = False) -> dict[str, ast.stmt]:
    """Names a module or class body defines (defs, classes, assignments), and with `imports` the
    names it imports too (a package's __init__ re-exports: a plain module's imports are not its own)."""
    names: dict[str, ast.stmt] = {}
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names[node.name] = node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        names[name.id] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
        elif imports and isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                names[(alias.asname or alias.name).split(".")[0]] = node
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            names |= bound_names(node.body, imports)
    return names


def defines(path: Path, chain: list[str]) -> bool:
    """Whether the Python file binds `chain[0]`, and each further name inside the class before it."""
    body = parsed(path).body
    for i, name in enumerate(chain):
        node = bound_names(body, imports=i == 0 and path.name == "__init__.py").get(name)
        if node is None:
            return False
        if i < len(chain) - 1:
            if not isinstance(node, ast.ClassDef):
                return False
            body = node.body
    return True


def resolve_dotted(dotted: str) -> str | None:
    """None when `ccreid.a.b.name` exists, else what is missing."""
    parts = dotted.split(".")[1:]
    for cut in range(len(parts), -1, -1):
        base = PACKAGE.joinpath(*parts[:cut])
        module = base.with_suffix(".py") if cut else None
        rest = parts[cut:]
        if module is not None and module.is_file():
            return None if not rest or defines(module, rest) else f"{module.relative_to(REPO)} has no {'.'.join(rest)}"
        if base.is_dir():
            init = base / "__init__.py"
            if not rest:
                return None
            if init.is_file() and defines(init, rest):
                return None
            return f"no module or name {'.'.join(parts[: cut + 1])} in {base.relative_to(REPO)}"
    return "no such module"


@cache
def package_classes() -> dict[str, list[ast.ClassDef]]:
    classes: dict[str, list[ast.ClassDef]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(parsed(path)):
            if isinstance(node, ast.ClassDef):
                classes.setdefault(node.name, []).append(node)
    return classes


def smk_defines(path: Path, name: str) -> bool:
    pattern = rf"^\s*(?:def|rule|checkpoint)\s+{re.escape(name)}\b|^{re.escape(name)}\s*="
    return re.search(pattern, path.read_text(encoding="utf-8"), re.M) is not None


def file_defines(path: Path, name: str) -> bool:
    if path.suffix == ".py":
        if "*" in name:
            return any(fnmatch.fnmatchcase(defined, name) for defined in bound_names(parsed(path).body))
        return defines(path, name.split("."))
    return smk_defines(path, name)


# --- what the docs write -------------------------------------------------------------------

DOTTED = re.compile(r"(?<![\w./-])ccreid(?:\.[A-Za-z_]\w*)+")
# A path: a known first folder, then path characters; it stops at a placeholder or a brace.
PATH = re.compile(
    r"(?<![\w./<>{}-])(?P<path>(?:src/ccreid/|)(?:"
    + "|".join(re.escape(f) for f in SUBPACKAGES + REPO_FOLDERS)
    + r")/[\w./*-]*|(?:cli|dvc_pipeline)\.py)(?P<after>:\d|::|)"
)
NAMED_AFTER_FILE = re.compile(
    r"`?(?P<file>[\w./-]+\.(?:py|smk))`?: *(?P<names>`[\w.*]+(?:\([^`]*\))?`(?:, *`[\w.*]+(?:\([^`]*\))?`)*)"
)
TEST_ID = re.compile(r"(?P<file>tests/[\w/]+\.py|…)::(?P<name>[\w*]+(?:::[\w*]+)?)")
CLASS_ATTRIBUTE = re.compile(r"`(?P<cls>[A-Z]\w*)\.(?P<attr>[a-z_]\w*)`")
LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)\)")
SECTION = re.compile(r"(?P<file>[\w./-]+\.md)(?:\]\([^)]*\))?,?\s+\"(?P<title>[^\"]+)\"")


def package_path(path: str) -> Path:
    """Where a path written in a doc lies: from the repository, or from src/ccreid."""
    first = path.split("/")[0]
    if first in REPO_FOLDERS or path.startswith("src/"):
        return REPO / path
    return PACKAGE / path


def path_exists(path: str) -> bool:
    path = path.rstrip(".")
    if "*" in path:
        return any(package_path(path).parent.glob(Path(path).name))
    return package_path(path).exists()


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@cache
def headings(path: Path) -> tuple[str, ...]:
    return tuple(re.findall(r"^#{1,6} +(.+?) *#*$", path.read_text(encoding="utf-8"), re.M))


@cache
def sections(path: Path) -> tuple[str, ...]:
    """What a doc's text can name as a section: its headings and its list items' bold labels."""
    labels = re.findall(r"^\s*[-*] +\*\*(.+?)\*\*", path.read_text(encoding="utf-8"), re.M)
    return headings(path) + tuple(labels)


def plain(text: str) -> str:
    return re.sub(r"[`*]", "", text).strip().lower()


def problems(doc: str, text: str) -> list[str]:
    found: list[str] = []
    folder = (REPO / doc.split(" ")[0]).parent
    for match in DOTTED.finditer(text):
        missing = resolve_dotted(match.group(0))
        if missing:
            found.append(f"{match.group(0)}: {missing}")
    for match in PATH.finditer(text):
        path, after = match.group("path"), match.group("after")
        if after.startswith(":") and after != "::":
            continue  # a file and line of another project's code (CAL's)
        if path.startswith(DATA_FOLDERS):
            continue
        if path.rstrip(".") in EXAMPLE_FILES:
            continue
        if not path_exists(path):
            found.append(f"{path}: no such file or folder")
    for match in NAMED_AFTER_FILE.finditer(text):
        file = match.group("file")
        if file in EXAMPLE_FILES:
            continue
        path = package_path(file)
        if not path.is_file():
            continue  # named by the path check above
        for name in re.findall(r"`([\w.*]+)", match.group("names")):
            if not file_defines(path, name):
                found.append(f"{file}: {name}: not defined there")
    last_test_file: str | None = None
    for match in TEST_ID.finditer(text):
        file = match.group("file")
        if file == "…":
            if last_test_file is None:
                found.append(f"…::{match.group('name')}: no test file named before it")
                continue
            file = last_test_file
        last_test_file = file
        if (REPO / file).is_file() and not file_defines(REPO / file, match.group("name").replace("::", ".")):
            found.append(f"{file}::{match.group('name')}: no such test")
    classes = package_classes()
    for match in CLASS_ATTRIBUTE.finditer(text):
        cls, attr = match.group("cls"), match.group("attr")
        if cls in classes and not any(attr in bound_names(node.body) for node in classes[cls]):
            found.append(f"{cls}.{attr}: class {cls} defines no {attr}")
    for match in LINK.finditer(text):
        target = match.group("target")
        if re.match(r"[a-z]+:", target):
            continue  # a URL
        file, _, anchor = target.partition("#")
        path = (folder / file).resolve() if file else REPO / doc.split(" ")[0]
        if not path.exists():
            found.append(f"link {target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in {slug(h) for h in headings(path)}:
            found.append(f"link {target}: no heading with that anchor")
    for match in SECTION.finditer(text):
        file, title = match.group("file"), " ".join(match.group("title").split())
        path = REPO / file if (REPO / file).is_file() else (folder / file)
        if not path.is_file():
            continue  # a file the other checks name
        if not any(plain(h).startswith(plain(title)) for h in sections(path)):
            found.append(f'{file}, "{title}": no such section')
    return found


@pytest.mark.parametrize("doc", sorted(documents()))
def test_a_doc_names_only_modules_names_and_files_that_exist(doc):
    found = problems(doc, documents()[doc])
    assert not found, f"{doc} names what does not exist:\n" + "\n".join(found)


def test_the_checks_find_what_is_missing():
    """Each check fails on a name that does not exist and passes on one that does."""
    text = (
        "`ccreid.core.paths` `ccreid.evaluation.features.read_features` `ccreid.engine.trainer.Trainer.step`\n"
        "`evaluation/stats.py` `models/gates/` `tests/test_stats.py` data/raw/prcc results/x.json\n"
        "`core/sections.py`: `train_section`, `EVAL_KEYS`\n"
        "`tests/test_docs.py::test_the_checks_find_what_is_missing`, `…::test_a_doc_*`\n"
        '`Params.run_config` [arch](docs/architecture.md#layers) (docs/report.md, "Intervals")\n'
        "CAL's `models/img_resnet.py:11`\n"
    )
    assert problems("README.md", text) == []
    bad = (
        "`ccreid.stages.extract.write_features` `ccreid.synth.DRAWING` `ccreid.engine.trainer.Trainer.stepp`\n"
        "`evaluation/stat.py` `tests/test_nothing.py`\n"
        "`core/sections.py`: `train_sections`\n"
        "`tests/test_docs.py::test_nothing`\n"
        '`Params.resolved` [arch](docs/architecture.md#nowhere) (docs/report.md, "No such section")\n'
    )
    found = problems("README.md", bad)
    expected = [
        "ccreid.stages.extract.write_features",  # imported there, defined in evaluation/features.py
        "ccreid.synth.DRAWING",
        "ccreid.engine.trainer.Trainer.stepp",
        "evaluation/stat.py",
        "tests/test_nothing.py",
        "core/sections.py: train_sections",
        "tests/test_docs.py::test_nothing",
        "Params.resolved",
        "link docs/architecture.md#nowhere",
        'docs/report.md, "No such section"',
    ]
    assert [name for name in expected if not any(problem.startswith(name) for problem in found)] == [], found
    assert len(found) == len(expected), found

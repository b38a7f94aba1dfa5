"""Property-based fuzzing of what a user hands ccreid: params.yaml and a raw data-set tree.

Each case mutates a valid input (params: wrong types, random values, unknown, missing and
duplicated keys, cut-off text; trees in every published layout: renamed, removed, zero-byte,
non-image and misnamed files, stray and missing folders) and runs the CLI on it. Whatever the
mutation, the command either works, leaving a complete output, or stops with exit status 2 and
exactly one `ccreid: error:` line, leaving no output: never a traceback. The CLI runs in-process
(`ccreid.cli.main`) for speed; `test_the_cli_in_a_process_of_its_own_agrees` checks a few cases
against real `ccreid` processes. Examples are derandomized: every run tries the same cases.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import h5py
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ccreid.core.paths import IMAGES, PROTOCOLS, SAMPLES, SKIPPED, SUMMARY
from ccreid.data.prepared import load_prepared
from helpers import call, run, tiny_params
from test_parsers import CELEB_FILES, LAST_FILES, PRCC_FILES, VC_FILES, make_deepchange, make_ltcc, write_images

pytestmark = [pytest.mark.fuzz, pytest.mark.slow]

PARAMS_CASES = 150
TREE_CASES_PER_LAYOUT = 20


def fuzz_settings(cases: int):
    return settings(
        max_examples=cases,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def assert_worked_or_refused(status: int, stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    if status == 0:
        assert "ccreid: error:" not in stderr, stderr
    else:
        assert status == 2 and stderr.startswith("ccreid: error:") and stderr.count("ccreid: error:") == 1, (
            status,
            stderr,
        )


# ------------------------------------------------------------------ params.yaml
REGISTRY = list(tiny_params()["experiments"])
ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.lists(st.integers(-3, 130), max_size=4),
    st.dictionaries(st.text(max_size=6), st.integers(-3, 130), max_size=2),
)
# Numbers of the value's own type, mostly plausible ones: the checks of meaning (epochs, weights,
# probabilities, batch sizes) get probed, not only the schema's types.
NEARBY = {
    bool: st.booleans(),
    int: st.one_of(st.integers(-2, 130), st.sampled_from([0, 1, 2**64])),
    float: st.one_of(
        st.floats(-1.0, 130.0), st.sampled_from([0.0, 0.5, 1.0, 1.5, 1e-9, 1e308, float("inf"), float("nan")])
    ),
}


def paths_of(tree, prefix=()):
    """Every key (and list index) path in the params tree."""
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for key, value in items:
        yield prefix + (key,)
        yield from paths_of(value, prefix + (key,))


def holder(tree, path):
    for part in path[:-1]:
        tree = tree[part]
    return tree


def mutate(params: dict, data) -> None:
    kind = data.draw(st.sampled_from(["set", "nudge", "delete", "add"]), label="mutation")
    if kind == "add":  # an unknown key in a mapping
        mappings = [()] + [p for p in paths_of(params) if isinstance(holder(params, p)[p[-1]], dict)]
        path = data.draw(st.sampled_from(mappings), label="mapping")
        mapping = holder(params, path)[path[-1]] if path else params
        mapping[data.draw(st.text(min_size=1, max_size=8), label="key")] = data.draw(ANY_VALUE, label="value")
        return
    paths = list(paths_of(params))
    if kind == "nudge":
        paths = [p for p in paths if type(holder(params, p)[p[-1]]) in NEARBY] or paths
    path = data.draw(st.sampled_from(paths), label="path")
    parent = holder(params, path)
    if kind == "set":
        parent[path[-1]] = data.draw(ANY_VALUE, label="value")
    elif kind == "nudge":
        parent[path[-1]] = data.draw(NEARBY.get(type(parent[path[-1]]), ANY_VALUE), label="number")
    else:
        del parent[path[-1]]


def duplicate_a_block(text: str, data) -> str:
    """The text with one `key: value` block of a block mapping repeated right after itself."""
    lines = text.splitlines(keepends=True)
    blocks = []

    def walk(node):
        if not isinstance(node, yaml.MappingNode) or node.flow_style:
            return  # not into lists: a repeated first key there would start a new list item
        for index, (key, value) in enumerate(node.value):
            end = node.value[index + 1][0].start_mark.line if index + 1 < len(node.value) else node.end_mark.line
            blocks.append((key.start_mark.line, end))
            walk(value)

    walk(yaml.compose(text))
    start, end = data.draw(st.sampled_from(blocks), label="duplicated block")
    return "".join(lines[:end] + lines[start:end] + lines[end:])


@fuzz_settings(PARAMS_CASES)
@given(data=st.data())
def test_mutated_params_work_or_are_refused_in_one_line(data):
    params = tiny_params()
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        mutate(params, data)
    text = yaml.safe_dump(params, sort_keys=False)
    edit = data.draw(st.sampled_from(["none"] * 3 + ["duplicate a block", "cut the text"]), label="text edit")
    if edit == "duplicate a block":
        text = duplicate_a_block(text, data)
    elif edit == "cut the text":
        text = text[: data.draw(st.integers(0, len(text)), label="cut at")]
    exp = data.draw(st.sampled_from(REGISTRY + ["999"]), label="experiment")
    command = data.draw(st.sampled_from(["write", "show", "list"]), label="command")
    if command == "write" and edit == "none" and isinstance(params.get("run"), dict):
        text = yaml.safe_dump({**params, "run": {**params["run"], "exp": exp}}, sort_keys=False)  # DVC's selection
    with tempfile.TemporaryDirectory() as folder:
        params_file, out = Path(folder) / "params.yaml", Path(folder) / "config"
        params_file.write_text(text)
        argv = {
            # DVC's config stage, after its runs table is written (both relative to the project)
            "write": [["dvc", "sync"], ["config", "write", "--out", str(out)]],
            "show": [["config", "show", exp, "--dataset", "synthetic"]],
            "list": [["config", "list"]],
        }[command]
        for step in argv:
            result = call(["--params", str(params_file), *step], cwd=folder, check=False)
            status, stderr = result.returncode, result.stderr
            if status != 0:
                break
        event(f"exit status {status}")
        assert_worked_or_refused(status, stderr)
        if edit == "duplicate a block":
            assert status == 2 and "appears twice" in stderr, stderr
        written = sorted(p.name for p in out.iterdir()) if out.exists() else []
        assert written == (["selected.json", "synthetic"] if status == 0 and command == "write" else [])
        if written:  # every stage's config: the data set's, and each run's (+ its training's)
            assert sorted(p.name for p in (out / "synthetic").glob("*.json")) == ["prepare.json", "synth.json"]
            runs = [folder for folder in (out / "synthetic").iterdir() if folder.is_dir()]
            assert runs and all({"evaluate.json", "extract.json"} <= {p.name for p in run.iterdir()} for run in runs)


# ------------------------------------------------------------------ raw data-set trees
def prcc_tree(base: Path) -> Path:
    write_images(base / "prcc", PRCC_FILES)
    return base / "prcc"


def flat_tree(files: list[str]):
    def build(base: Path) -> Path:
        write_images(base / "raw", files)
        return base / "raw"

    return build


TREES = {  # layout -> builder of a small valid tree (the trees tests/test_parsers.py parses)
    "prcc": prcc_tree,
    "ltcc": make_ltcc,
    "vcclothes": flat_tree(VC_FILES),
    "deepchange": make_deepchange,
    "last": flat_tree(LAST_FILES),
    "celeb": flat_tree(CELEB_FILES),
}
NAME = st.text(alphabet="abcXYZ0129_-.", min_size=1, max_size=10).filter(lambda n: n not in {".", ".."})
SUFFIX = st.sampled_from([".jpg", ".png", ".jpeg", ".txt", ""])
PREPARED_FILES = sorted([SAMPLES, IMAGES, PROTOCOLS, SUMMARY, SKIPPED, "fingerprint.json"])


def mutate_tree(root: Path, data) -> None:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    folders = sorted([root, *(p for p in root.rglob("*") if p.is_dir())])
    kind = data.draw(
        st.sampled_from(
            [
                "rename",
                "remove",
                "zero-byte",
                "not an image",
                "move",
                "not text",
                "stray folder",
                "stray file",
                "remove folder",
            ]
        ),
        label="tree mutation",
    )
    if kind == "not text":  # a layout's list files (DeepChange, LTCC): binary instead of text
        files = [p for p in files if p.suffix == ".txt"]
        kind = "not an image"
    if kind in ("rename", "remove", "zero-byte", "not an image", "move") and files:
        file = data.draw(st.sampled_from(files), label="file")
        if kind == "rename":
            target = file.with_name(data.draw(NAME, label="name") + data.draw(SUFFIX, label="suffix"))
            if not target.is_dir():  # a file cannot replace a folder
                file.rename(target)
        elif kind == "remove":
            file.unlink()
        elif kind == "zero-byte":
            file.write_bytes(b"")
        elif kind == "not an image":
            file.write_bytes(data.draw(st.binary(min_size=1, max_size=40), label="content"))
        else:
            folder = data.draw(st.sampled_from(folders), label="to folder")
            if not (folder / file.name).exists():
                file.rename(folder / file.name)
    elif kind == "stray folder":
        stray = data.draw(st.sampled_from(folders), label="in folder") / data.draw(NAME, label="folder name")
        if not stray.is_file():  # an earlier stray file may hold the name
            stray.mkdir(exist_ok=True)
            if data.draw(st.booleans(), label="with an image"):
                write_images(stray, ["x.jpg"])
    elif kind == "stray file":
        folder = data.draw(st.sampled_from(folders), label="in folder")
        stray = folder / (data.draw(NAME, label="file name") + data.draw(SUFFIX))
        if not stray.is_dir():  # an earlier stray folder may hold the name
            stray.write_text("notes")
    elif kind == "remove folder" and len(folders) > 1:
        shutil.rmtree(data.draw(st.sampled_from(folders[1:]), label="folder"))


def prepare_case(folder: Path, layout: str, mutations) -> tuple[list[str], Path]:
    """A params file and a tree of `layout` changed by `mutations(root)`; returns the command
    preparing it and its output folder."""
    root = TREES[layout](folder / "raw")
    mutations(root)
    params = tiny_params()
    params["datasets"]["fuzzed"] = {"layout": layout, "root": str(root), "size": [16, 8]}
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = folder / "prepared" / "fuzzed"
    return ["--params", str(folder / "params.yaml"), "prepare", "--dataset", "fuzzed", "--out", str(out)], out


def assert_complete_or_absent(status: int, out: Path) -> None:
    leftovers = (
        sorted(p.name for p in out.parent.iterdir() if not p.name.endswith(".lock")) if out.parent.exists() else []
    )
    if status != 0:
        assert leftovers == [], leftovers
        return
    assert leftovers == [out.name] and sorted(p.name for p in out.iterdir()) == PREPARED_FILES
    prepared = load_prepared(out)
    with h5py.File(out / IMAGES) as store:
        assert len(store["images"]) == len(prepared.samples) > 0


@pytest.mark.parametrize("layout", list(TREES))
@fuzz_settings(TREE_CASES_PER_LAYOUT)
@given(data=st.data())
def test_mutated_data_set_trees_are_prepared_whole_or_refused_in_one_line(layout, data):
    count = data.draw(st.integers(1, 3), label="mutations")
    with tempfile.TemporaryDirectory() as folder:
        argv, out = prepare_case(Path(folder), layout, lambda root: [mutate_tree(root, data) for _ in range(count)])
        result = call(argv, check=False)
        status, stderr = result.returncode, result.stderr
        event(f"exit status {status}")
        assert_worked_or_refused(status, stderr)
        assert_complete_or_absent(status, out)


# ------------------------------------------------------------------ the same in real processes
def _zero_byte_image(root: Path) -> None:
    next(root.rglob("*.jpg")).write_bytes(b"")


def _stray_folder(root: Path) -> None:
    (root / "train" / "extra").mkdir()


CROSS_CHECKS = {  # layout, mutation: one refused and one prepared tree, and a damaged list file
    "prcc, zero-byte image": ("prcc", _zero_byte_image),
    "ltcc, stray folder": ("ltcc", _stray_folder),
    "deepchange, binary list file": ("deepchange", lambda root: (root / "train-set-bbox.txt").write_bytes(b"\xff\xfe")),
    "celeb, unchanged": ("celeb", lambda root: None),
}


@pytest.mark.parametrize("case", list(CROSS_CHECKS))
def test_the_cli_in_a_process_of_its_own_agrees(tmp_path, case):
    layout, mutation = CROSS_CHECKS[case]
    argv, out = prepare_case(tmp_path / "in-process", layout, mutation)
    in_process = call(argv, check=False)
    shutil.rmtree(out.parent, ignore_errors=True)
    process = run(["ccreid", *argv], cwd=tmp_path, check=False)
    assert (process.returncode, process.stderr) == (in_process.returncode, in_process.stderr)
    assert_worked_or_refused(process.returncode, process.stderr)
    assert_complete_or_absent(process.returncode, out)

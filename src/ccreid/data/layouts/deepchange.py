"""DeepChange as published: DeepChangeDataset/<split folder>/*.jpg plus <split folder>-bbox.txt.

Each list file line is `<image file name>,<tracklet id>`. From the file name split on `_`:
pid = first token without its leading letter, camera = second token without its leading letter,
clothes key = first token + third token. The **tracklet id is stored as camid**: following the
data set's paper, true matches may come from the same camera but not from the same tracklet, so
the standard rule (junk = same pid and same camid) then removes exactly the same-tracklet images.
The list file is the index; every listed image must exist and every image must be listed.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from ccreid.core.errors import CCReIDError
from ccreid.core.registry import layout
from ccreid.data.layouts.base import ParsedDataset
from ccreid.data.layouts.files import list_images, require_dir, require_root, samples_frame
from ccreid.data.layouts.naming import NamePattern, Row, standard_protocols

PATTERN = NamePattern(
    dataset="DeepChange",
    regex=r"(?P<person>[A-Za-z](?P<pid>\d+))_[A-Za-z](?P<cam>\d+)_(?P<outfit>[^_]+)(?:_.*)?",
    expected="<letter><pid>_<letter><camera>_<outfit>_<...>.jpg (e.g. P00001_C01_D01_F0001.jpg)",
)
# published folder -> split name in the samples table
SPLITS = {
    "train-set": "train",
    "val-set-query": "val_query",
    "val-set-gallery": "val_gallery",
    "test-set-query": "query",
    "test-set-gallery": "gallery",
}
LINE = re.compile(r"(?P<name>[^,]+),\s*(?P<tracklet>-?\d+)")


def _read_list(list_file: Path) -> list[tuple[str, int, int]]:
    """(image name, tracklet id, line number) for each line of a `<split>-bbox.txt` file."""
    if not list_file.is_file():
        raise CCReIDError(
            f"{list_file}: list file not found; DeepChange ships one <split>-bbox.txt beside each "
            "split folder, holding `<image file name>,<tracklet id>` lines. See docs/datasets.md."
        )
    try:
        text = list_file.read_text()
    except UnicodeDecodeError as error:
        raise CCReIDError(
            f"{list_file}: not a text list file ({error}); restore it from the published archive."
        ) from None
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        found = LINE.fullmatch(line)
        if found is None:
            raise CCReIDError(
                f"{list_file}, line {number}: expected `<image file name>,<tracklet id>`, found {line!r}."
            )
        entries.append((found["name"].strip(), int(found["tracklet"]), number))
    return entries


def _check_listing(list_file: Path, folder: Path, names: list[str]) -> None:
    """The list file and the folder must name the same images, each once."""
    counts = Counter(names)
    repeated = sorted(name for name, count in counts.items() if count > 1)
    seen = set(counts)
    on_disk = {image.name for image in list_images(folder)}
    problems = [
        ("listed more than once", repeated),
        (f"listed but missing from {folder}", sorted(seen - on_disk)),
        (f"in {folder} but not listed", sorted(on_disk - seen)),
    ]
    for what, names_ in problems:
        if names_:
            raise CCReIDError(
                f"{list_file}: {len(names_)} image(s) {what}, e.g. {', '.join(names_[:3])}. "
                "The list file and its folder must come from the same unmodified copy."
            )


def _split_rows(root: Path, folder_name: str, split: str) -> list[Row]:
    folder = require_dir(root / folder_name, "DeepChange")
    list_file = root / f"{folder_name}-bbox.txt"
    entries = _read_list(list_file)
    _check_listing(list_file, folder, [name for name, _, _ in entries])
    rows = []
    for name, tracklet, number in entries:
        found = PATTERN.match(folder / name, where=f"listed in {list_file}, line {number}")
        clothes = found["person"] + found["outfit"]
        rows.append((folder / name, int(found["pid"]), tracklet, clothes, split))
    return rows


@layout("deepchange")
def parse_deepchange(root: Path) -> ParsedDataset:
    holds = "train-set/, val-set-*/, test-set-*/ and their -bbox.txt lists"
    root = require_root(root, "DeepChange", holds)
    rows = [row for folder, split in SPLITS.items() for row in _split_rows(root, folder, split)]
    protocols = standard_protocols(with_val=True)
    return ParsedDataset(samples=samples_frame(rows, root), protocols=protocols)

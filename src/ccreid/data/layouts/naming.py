"""File-name patterns: labels come from an image's own name, never from its parent folders.

Several published parsers search their patterns in the whole path, so a parent folder that
happens to look like a label (``my_code/``, ``001_9_c9_000000/``) silently changes every label.
Here a pattern is matched against the file name without its suffix, start to end.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ccreid.core.errors import CCReIDError
from ccreid.data.layouts.base import ParsedDataset, Protocol
from ccreid.data.layouts.files import list_images, require_dir, require_root, samples_frame

# A row of the samples table before paths are made relative: (path, pid, camid, clothes, split).
Row = tuple[Path, int, int, str, str]
# Turns the match of a file name into (pid, camid, clothes key).
Labeller = Callable[[re.Match], tuple[int, int, str]]


@dataclass(frozen=True)
class NamePattern:
    """A regular expression for the stem of a data set's image names.

    `expected` is the human-readable form quoted in errors, e.g.
    ``<pid>_<clothes>_c<cam>_<frame>.png (e.g. 094_1_c9_015923.png)``.
    """

    dataset: str
    regex: str
    expected: str

    def match(self, image: Path | str, where: str = "") -> re.Match:
        name = Path(image).name
        stem = name.rsplit(".", 1)[0] if "." in name else name
        found = re.fullmatch(self.regex, stem)
        if found is None:
            origin = f" ({where})" if where else ""
            raise CCReIDError(
                f"{image}{origin}: file name does not match the {self.dataset} pattern "
                f"{self.expected}. Rename or remove it, or point the data set's root at an "
                "unmodified copy."
            )
        return found


def label_images(images: Iterable[Path], split: str, pattern: NamePattern, labeller: Labeller) -> list[Row]:
    """One row per image, labels parsed from each file name by `pattern` and `labeller`."""
    return [(image, *labeller(pattern.match(image)), split) for image in images]


def standard_protocols(with_val: bool = False) -> list[Protocol]:
    """`standard` on query vs gallery; and `val` (val_query vs val_gallery, standard rule) for a
    data set that publishes a validation split."""
    protocols = [Protocol("standard", query="query", gallery="gallery", mode="standard")]
    if with_val:
        protocols.append(Protocol("val", query="val_query", gallery="val_gallery", mode="standard"))
    return protocols


def identity_only_labels(found: re.Match) -> tuple[int, int, str]:
    """Labels of a data set that names only the identity: clothes key = pid, camera 0 (to be
    replaced by `one_camera_per_image`)."""
    pid = int(found["pid"])
    return pid, 0, str(pid)


def one_camera_per_image(rows: list[Row]) -> list[Row]:
    """Give every image a camera of its own (0, 1, 2, ... in row order).

    For data sets without camera labels (LaST, Celeb-reID): with distinct cameras the standard
    rule marks nothing as junk, so every other image of the identity counts as a match.
    """
    return [(path, pid, index, clothes, split) for index, (path, pid, _, clothes, split) in enumerate(rows)]


def flat_split_rows(
    root: Path, dataset: str, folders: dict[str, str], pattern: NamePattern, labeller: Labeller
) -> list[Row]:
    """Rows of flat split folders (``root/<folder>/*.jpg``), `folders` mapping folder -> split."""
    rows: list[Row] = []
    for folder, split in folders.items():
        images = list_images(require_dir(Path(root) / folder, dataset))
        rows += label_images(images, split, pattern, labeller)
    return rows


@dataclass(frozen=True)
class FlatLayout:
    """A data set published as flat split folders (`root/<folder>/*.jpg`) whose file names carry
    the labels: LTCC, VC-Clothes, Celeb-reID."""

    pattern: NamePattern
    labeller: Labeller
    folders: dict[str, str]  # published folder -> split name
    holds: str  # what the root folder holds, for the message when it is missing
    protocols: tuple[Protocol, ...]
    camera_per_image: bool = False  # no camera labels: see one_camera_per_image

    def parse(self, root: Path) -> ParsedDataset:
        dataset = self.pattern.dataset
        root = require_root(root, dataset, self.holds)
        rows = flat_split_rows(root, dataset, self.folders, self.pattern, self.labeller)
        if self.camera_per_image:
            rows = one_camera_per_image(rows)
        return ParsedDataset(samples=samples_frame(rows, root), protocols=list(self.protocols))

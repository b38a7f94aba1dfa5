"""LaST as published: last/train/<pid>/*.jpg, last/{val,test}/query/*.jpg (flat) and
last/{val,test}/gallery/<pid>/*.jpg.

From the file name split on `_`: pid = first token; train clothes key = first + last token
(`<pid>_<last>`). Val and test have no clothes labels: their clothes key is the pid. There are
no camera labels either: every image is its own camera, so the standard rule marks nothing as
junk. Labels come from file names only; the identity folders are not read as labels.
"""

from __future__ import annotations

import re
from pathlib import Path

from ccreid.core.registry import layout
from ccreid.data.layouts.base import ParsedDataset
from ccreid.data.layouts.files import (
    list_images,
    list_nested_images,
    require_dir,
    require_root,
    samples_frame,
)
from ccreid.data.layouts.naming import (
    NamePattern,
    Row,
    identity_only_labels,
    label_images,
    one_camera_per_image,
    standard_protocols,
)

TRAIN_PATTERN = NamePattern(
    dataset="LaST",
    regex=r"(?P<pid>\d+)_(?:.*_)?(?P<last>[^_]+)",
    expected="<pid>_<...>_<clothes>.jpg in train/<pid>/ (e.g. 000123_0_1.jpg)",
)
TEST_PATTERN = NamePattern(
    dataset="LaST",
    regex=r"(?P<pid>\d+)(?:_.*)?",
    expected="<pid>_<...>.jpg (e.g. 000123_0_1.jpg)",
)


def _train_labels(found: re.Match) -> tuple[int, int, str]:
    return int(found["pid"]), 0, f"{found['pid']}_{found['last']}"


def _eval_rows(root: Path, part: str, prefix: str) -> list[Row]:
    """Query (flat) and gallery (identity folders) of `part` ("val" or "test")."""
    folder = require_dir(root / part, "LaST")
    queries = list_images(require_dir(folder / "query", "LaST"))
    gallery = list_nested_images(require_dir(folder / "gallery", "LaST"))
    rows = label_images(queries, f"{prefix}query", TEST_PATTERN, identity_only_labels)
    return rows + label_images(gallery, f"{prefix}gallery", TEST_PATTERN, identity_only_labels)


@layout("last")
def parse_last(root: Path) -> ParsedDataset:
    root = require_root(root, "LaST", "train/ val/ test/, i.e. the published last/ folder")
    train = list_nested_images(require_dir(root / "train", "LaST"))
    rows = label_images(train, "train", TRAIN_PATTERN, _train_labels)
    rows += _eval_rows(root, "val", "val_") + _eval_rows(root, "test", "")
    samples = samples_frame(one_camera_per_image(rows), root)
    return ParsedDataset(samples=samples, protocols=standard_protocols(with_val=True))

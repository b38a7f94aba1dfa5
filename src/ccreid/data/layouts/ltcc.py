"""LTCC as published: LTCC_ReID/{train,query,test}/<pid>_<clothes>_c<cam>_<frame>.png.

`test/` is the gallery. Labels come from the file name only (see ccreid.data.layouts.naming): the
reference code searches its pattern in the whole path, so a parent folder named like a label
changes every clothes id there. Camera ids have one or two digits and are kept 1-based as written.
The id lists in `info/` are not needed: the cc protocol finds clothes changes from the clothes keys.
"""

from __future__ import annotations

import re
from pathlib import Path

from ccreid.core.registry import layout
from ccreid.data.layouts.base import ParsedDataset, Protocol
from ccreid.data.layouts.naming import FlatLayout, NamePattern


def _labels(found: re.Match) -> tuple[int, int, str]:
    """pid, camera, clothes key `<pid>_<clothes>` (the tokens as written)."""
    return int(found["pid"]), int(found["cam"]), f"{found['pid']}_{found['clothes']}"


LAYOUT = FlatLayout(
    pattern=NamePattern(
        dataset="LTCC",
        regex=r"(?P<pid>\d+)_(?P<clothes>\d+)_c(?P<cam>\d+)_(?P<frame>.+)",
        expected="<pid>_<clothes>_c<cam>_<frame>.png (e.g. 094_1_c9_015923.png)",
    ),
    labeller=_labels,
    folders={"train": "train", "query": "query", "test": "gallery"},
    holds="train/ query/ test/, i.e. the published LTCC_ReID/ folder",
    protocols=(
        Protocol("standard", query="query", gallery="gallery", mode="standard"),
        Protocol("cc", query="query", gallery="gallery", mode="cc"),
    ),
)


@layout("ltcc")
def parse_ltcc(root: Path) -> ParsedDataset:
    return LAYOUT.parse(root)

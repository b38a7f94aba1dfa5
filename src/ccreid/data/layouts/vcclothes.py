"""VC-Clothes as published: VC-Clothes/{train,query,gallery}/<pid>-<cam>-<clothes>-<idx>.jpg.

Clothes key `<pid><clothes>` (the two tokens as written); camid is the 1-based camera of the
name, which is what `Protocol.cameras` refers to. The reported settings: all cameras
(`standard`); same-clothes keeps cameras 2 and 3 only, clothes-changing cameras 3 and 4 only,
both filtering query and gallery and then evaluating with the standard rule.
"""

from __future__ import annotations

from pathlib import Path
from re import Match

from ccreid.core.registry import layout
from ccreid.data.layouts.base import ParsedDataset, Protocol
from ccreid.data.layouts.naming import FlatLayout, NamePattern

SC_CAMERAS = (2, 3)
CC_CAMERAS = (3, 4)


def _labels(found: Match) -> tuple[int, int, str]:
    return int(found["pid"]), int(found["cam"]), found["pid"] + found["clothes"]


LAYOUT = FlatLayout(
    pattern=NamePattern(
        dataset="VC-Clothes",
        regex=r"(?P<pid>\d+)-(?P<cam>\d+)-(?P<clothes>\d+)-(?P<idx>.+)",
        expected="<pid>-<cam>-<clothes>-<idx>.jpg (e.g. 0001-01-03-05.jpg)",
    ),
    labeller=_labels,
    folders={split: split for split in ("train", "query", "gallery")},
    holds="train/ query/ gallery/, i.e. the published VC-Clothes/ folder",
    protocols=(
        Protocol("standard", query="query", gallery="gallery"),
        Protocol("sc", query="query", gallery="gallery", mode="standard", cameras=SC_CAMERAS),
        Protocol("cc", query="query", gallery="gallery", mode="standard", cameras=CC_CAMERAS),
    ),
)


@layout("vcclothes")
def parse_vcclothes(root: Path) -> ParsedDataset:
    return LAYOUT.parse(root)

"""Celeb-reID and Celeb-reID-light as published: {train,query,gallery}/<x>_<y>_<...>.jpg.

x is the identity (public parsers match `([-\\d]+)_(\\d)`, so a leading minus is allowed), y the
y-th image of that identity. There are no camera and no clothes labels: every image is its own
camera (nothing is junk under the standard rule) and the clothes key is the identity.
"""

from __future__ import annotations

from pathlib import Path

from ccreid.core.registry import layout
from ccreid.data.layouts.base import ParsedDataset
from ccreid.data.layouts.naming import FlatLayout, NamePattern, identity_only_labels, standard_protocols

LAYOUT = FlatLayout(
    pattern=NamePattern(
        dataset="Celeb-reID",
        regex=r"(?P<pid>-?\d+)_(?P<index>\d+)(?:_.*)?",
        expected="<id>_<n>_<...>.jpg (e.g. 1_1_0.jpg)",
    ),
    labeller=identity_only_labels,
    folders={"train": "train", "query": "query", "gallery": "gallery"},
    holds="train/ query/ gallery/, i.e. the published Celeb-reID/ (or Celeb-reID-light/) folder",
    protocols=tuple(standard_protocols()),
    camera_per_image=True,
)


@layout("celeb")
@layout("celeb_light")
def parse_celeb(root: Path) -> ParsedDataset:
    """Celeb-reID and Celeb-reID-light (same layout and names)."""
    return LAYOUT.parse(root)

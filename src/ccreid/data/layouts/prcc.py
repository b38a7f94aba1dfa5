"""PRCC as published: rgb/{train,val}/<pid>/<cam>_*.jpg and rgb/test/{A,B,C}/<pid>/*.jpg."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ccreid.core.errors import CCReIDError
from ccreid.core.registry import layout
from ccreid.data.layouts.base import ParsedDataset, Protocol
from ccreid.data.layouts.files import list_images, require_dir

CAMERAS = {"A": 0, "B": 1, "C": 2}
# Camera C shows each person in a second outfit; A and B share the first.
TEST_SPLITS = {"A": "gallery", "B": "query_sc", "C": "query_cc"}


def _clothes_key(pid: int, camera: str) -> str:
    return f"{pid}C" if camera == "C" else str(pid)


def _pid_folders(split_dir: Path) -> list[Path]:
    folders = sorted(p for p in split_dir.iterdir() if p.is_dir())
    bad = [p for p in folders if not p.name.isdigit()]
    if bad:
        raise CCReIDError(
            f"{bad[0]}: PRCC identity folders must be integers; found {len(bad)} that are not "
            f"(e.g. {', '.join(p.name for p in bad[:3])}). Is this really PRCC's rgb/ tree?"
        )
    return folders


@layout("prcc")
def parse_prcc(root: Path) -> ParsedDataset:
    root = Path(root)
    rgb = require_dir(root / "rgb", "PRCC", hint="the PRCC root is the folder that holds rgb/")
    rows = []
    for split in ("train", "val"):
        split_dir = require_dir(rgb / split, "PRCC")
        for pid_dir in _pid_folders(split_dir):
            pid = int(pid_dir.name)
            for image in list_images(pid_dir):
                camera = image.name[0].upper()
                if camera not in CAMERAS:
                    raise CCReIDError(f"{image}: PRCC train/val file names start with the camera letter A, B or C")
                rows.append((image, pid, CAMERAS[camera], _clothes_key(pid, camera), split))
    test_dir = require_dir(rgb / "test", "PRCC")
    for camera, split in TEST_SPLITS.items():
        for pid_dir in _pid_folders(require_dir(test_dir / camera, "PRCC")):
            pid = int(pid_dir.name)
            for image in list_images(pid_dir):
                rows.append((image, pid, CAMERAS[camera], _clothes_key(pid, camera), split))
    samples = pd.DataFrame(rows, columns=["path", "pid", "camid", "clothes", "split"])
    samples["path"] = [p.relative_to(root).as_posix() for p in samples["path"]]
    protocols = [
        Protocol("cc", query="query_cc", gallery="gallery", mode="cc"),
        Protocol("sc", query="query_sc", gallery="gallery", mode="sc"),
        Protocol("cc_single", query="query_cc", gallery="gallery", mode="cc", single_shot=True),
        Protocol("sc_single", query="query_sc", gallery="gallery", mode="sc", single_shot=True),
    ]
    return ParsedDataset(samples=samples, protocols=protocols)

"""File-system helpers shared by the parsers."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from ccreid.core.errors import CCReIDError
from ccreid.data.layouts.base import SAMPLE_COLUMNS

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


def require_dir(path: Path, dataset: str, hint: str = "") -> Path:
    if not path.is_dir():
        extra = f" ({hint})" if hint else ""
        raise CCReIDError(
            f"{path}: folder not found; this {dataset} copy does not have the published layout"
            f"{extra}. See docs/datasets.md for the expected tree."
        )
    return path


def require_root(root: Path, dataset: str, holds: str) -> Path:
    """The data set's root folder itself; the message says what the root must hold."""
    return require_dir(
        Path(root),
        dataset,
        hint=f"set datasets.<name>.root in params.yaml to the folder that holds {holds}",
    )


def list_images(folder: Path, allow_empty: bool = False) -> list[Path]:
    """Image files directly in `folder`, sorted; any other file is an error naming it.

    A folder with no image at all is an error too (an empty identity or split folder is a
    damaged copy), unless `allow_empty`.
    """
    images, others = [], []
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            others.append(entry)
        elif entry.suffix.lower() in IMAGE_SUFFIXES:
            images.append(entry)
        elif not entry.name.startswith("."):
            others.append(entry)
    if others:
        raise CCReIDError(
            f"{folder}: unexpected entries that are not images: "
            f"{', '.join(o.name for o in others[:5])}{' ...' if len(others) > 5 else ''}. "
            "Remove them or point the data set's root at an unmodified copy."
        )
    if not images and not allow_empty:
        raise CCReIDError(
            f"{folder}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}). "
            "Restore its images from the published archive or point the data set's root at a "
            "complete copy."
        )
    return images


def list_nested_images(folder: Path) -> list[Path]:
    """Images one level down, in `folder/<identity>/*`; loose files in `folder` are errors."""
    entries = list(folder.iterdir())
    loose = sorted(e.name for e in entries if not e.is_dir() and not e.name.startswith("."))
    if loose:
        raise CCReIDError(
            f"{folder}: expected only identity folders here, found files: "
            f"{', '.join(loose[:5])}{' ...' if len(loose) > 5 else ''}. "
            "Remove them or point the data set's root at an unmodified copy."
        )
    subfolders = sorted(e for e in entries if e.is_dir())
    if not subfolders:
        raise CCReIDError(f"{folder}: no identity folders found; this copy looks incomplete.")
    return [image for sub in subfolders for image in list_images(sub)]


def samples_frame(rows: Iterable[tuple], root: Path) -> pd.DataFrame:
    """Rows (absolute image path, pid, camid, clothes, split) as the samples table."""
    samples = pd.DataFrame(list(rows), columns=list(SAMPLE_COLUMNS))
    root = Path(root)
    samples["path"] = [Path(p).relative_to(root).as_posix() for p in samples["path"]]
    samples["pid"] = samples["pid"].astype("int64")
    samples["camid"] = samples["camid"].astype("int64")
    samples["clothes"] = samples["clothes"].astype(str)
    return samples

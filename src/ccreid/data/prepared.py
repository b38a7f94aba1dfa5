"""The prepared store of a data set, as the later stages read it: data/prepared/<dataset>/ holds
``samples.csv`` (one row per image, aligned with the rows of ``images.h5``), ``images.h5``
(``images``: N×3×H×W uint8), ``protocols.json``, ``summary.json`` (counts per split),
``skipped.json`` (undecodable files left out) and ``fingerprint.json``. Written whole and
atomically by the `prepare` stage (ccreid.data.preparation)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from ccreid.core.errors import CCReIDError
from ccreid.core.paths import IMAGES, PROTOCOLS, SAMPLES
from ccreid.data.layouts.base import SAMPLE_COLUMNS, Protocol, protocols_from_json


@dataclasses.dataclass
class PreparedData:
    """A prepared data set as the later stages read it."""

    samples: pd.DataFrame
    protocols: list[Protocol]
    images_path: Path


def load_prepared(folder: Path) -> PreparedData:
    folder = Path(folder)
    for name in (SAMPLES, IMAGES, PROTOCOLS):
        if not (folder / name).is_file():
            raise CCReIDError(f"{folder / name}: missing; run `ccreid prepare` for this data set first")
    try:
        samples = pd.read_csv(folder / SAMPLES, dtype={"clothes": str, "path": str, "split": str})
        protocols = protocols_from_json((folder / PROTOCOLS).read_text())
    except (OSError, ValueError, TypeError, KeyError) as error:  # ValueError: bad CSV, JSON or text
        raise CCReIDError(
            f"{folder}: damaged prepared data set ({type(error).__name__}: {error}); "
            "delete the folder and re-run `ccreid prepare`"
        ) from None
    missing = sorted({*SAMPLE_COLUMNS, "label", "clothes_label"} - set(samples.columns))
    if missing:
        raise CCReIDError(
            f"{folder / SAMPLES}: missing column(s) {missing}; delete the folder and re-run `ccreid prepare`"
        )
    return PreparedData(samples=samples, protocols=protocols, images_path=folder / IMAGES)

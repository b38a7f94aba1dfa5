"""Stage `prepare`: parse a raw data set, decode and resize every image once, store uint8 in HDF5.

Output folder (written whole, atomically): ``samples.csv`` (one row per image, aligned with the
rows of ``images.h5``), ``images.h5`` (``images``: N×3×H×W uint8), ``protocols.json``,
``summary.json`` (counts per split), ``skipped.json`` (undecodable files left out) and ``fingerprint.json`` (raw data hash, size).
Images are decoded by a process pool and written one at a time, so memory stays flat.
"""

from __future__ import annotations

import dataclasses
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from PIL import Image

from ccreid import fingerprint
from ccreid.atomic import atomic_dir, exclusive, require_free_space
from ccreid.config import DatasetCfg
from ccreid.datasets import PARSERS, SAMPLE_COLUMNS, ParsedDataset, Protocol
from ccreid.datasets.validate import validate
from ccreid.errors import CCReIDError

SAMPLES = "samples.csv"
IMAGES = "images.h5"
PROTOCOLS = "protocols.json"
SUMMARY = "summary.json"
SKIPPED = "skipped.json"  # images left out under on_bad_image: skip


def _missing_root_message(name: str, cfg: DatasetCfg) -> str:
    how = cfg.obtain or "see docs/datasets.md for where to obtain it"
    return (
        f"data set {name!r}: raw root {cfg.root} not found. Place the data set there in its "
        f"published layout ({cfg.layout}) or change datasets.{name}.root in params.yaml; {how}."
    )


def parse_dataset(name: str, cfg: DatasetCfg) -> tuple[ParsedDataset, dict]:
    """Parse and validate the raw data set; returns the parse and its summary."""
    if cfg.layout not in PARSERS:
        raise CCReIDError(
            f"datasets.{name}.layout = {cfg.layout!r} is unknown; use one of {', '.join(PARSERS)}"
        )
    root = Path(cfg.root)
    if not root.is_dir():
        raise CCReIDError(_missing_root_message(name, cfg))
    try:
        parsed = PARSERS[cfg.layout](root)
    except CCReIDError as error:
        fits = _layouts_that_fit(root, cfg.layout)
        if not fits:
            raise
        raise CCReIDError(
            f"{error}\n{root} has the {fits[0]!r} layout instead: if that is what it holds, set "
            f"datasets.{name}.layout: {fits[0]} in params.yaml; otherwise point datasets.{name}.root "
            f"at a copy in the {cfg.layout} layout."
        ) from None
    return parsed, validate(parsed, name)


def _layouts_that_fit(root: Path, failed: str) -> list[str]:
    """The other layouts that parse `root` (only asked after its own layout failed)."""
    fits = []
    for layout, parser in PARSERS.items():
        if parser is PARSERS[failed]:
            continue
        try:
            parser(root)
        except CCReIDError:
            continue
        fits.append(layout)
    return fits


def _decode(job: tuple[str, int, int]) -> np.ndarray | str:
    """One image as 3×H×W uint8, or the error text when it cannot be decoded."""
    path, height, width = job
    try:
        with Image.open(path) as image:
            image = image.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
            return np.ascontiguousarray(np.asarray(image).transpose(2, 0, 1))
    except Exception as error:  # noqa: BLE001 — any decoder failure means a bad file
        return f"{type(error).__name__}: {error}"


def _labelled(samples: pd.DataFrame) -> pd.DataFrame:
    """Add training labels: pids and clothes keys of the train split relabelled 0..N-1.

    `clothes_label` codes every clothes key: train keys first (0..C-1, the clothes classifier's
    classes), then the evaluation splits' keys, so evaluation can compare clothes as integers.
    """
    samples = samples.copy()
    train = samples["split"] == "train"
    pid_labels = {pid: i for i, pid in enumerate(sorted(samples.loc[train, "pid"].unique()))}
    samples["label"] = [pid_labels[p] if t else -1 for p, t in zip(samples["pid"], train)]
    train_keys = sorted(samples.loc[train, "clothes"].unique())
    other_keys = sorted(set(samples.loc[~train, "clothes"]) - set(train_keys))
    clothes_codes = {key: i for i, key in enumerate(train_keys + other_keys)}
    samples["clothes_label"] = samples["clothes"].map(clothes_codes).astype("int64")
    return samples


def prepare(name: str, cfg: DatasetCfg, out_dir: Path, workers: int | None = None) -> dict:
    """Build ``out_dir`` for data set `name`; returns the summary. No-op when already fresh."""
    out_dir = Path(out_dir)
    parsed, summary = parse_dataset(name, cfg)
    expected = fingerprint.make_fingerprint(
        __name__,
        {"layout": cfg.layout, "size": list(cfg.size), "on_bad_image": cfg.on_bad_image},
        {"raw": Path(cfg.root)},
    )
    with exclusive(out_dir):
        if fingerprint.is_fresh(out_dir, expected):
            return json.loads((out_dir / SUMMARY).read_text())
        height, width = cfg.size
        require_free_space(out_dir.parent, len(parsed.samples) * 3 * height * width,
                           f"preparing data set {name!r}")
        with atomic_dir(out_dir) as tmp:
            summary = _write_prepared(name, cfg, parsed, summary, tmp, workers)
            fingerprint.record(tmp, expected)
    return summary


def _write_prepared(name: str, cfg: DatasetCfg, parsed: ParsedDataset, summary: dict, folder: Path,
                    workers: int | None) -> dict:
    """Decode every image into ``folder`` and write the tables; returns the (final) summary."""
    samples = _labelled(parsed.samples.reset_index(drop=True))
    height, width = cfg.size
    root = Path(cfg.root)
    jobs = [(str(root / p), height, width) for p in samples["path"]]
    workers = workers or min(len(os.sched_getaffinity(0)), 8)
    bad: list[str] = []
    with h5py.File(folder / IMAGES, "w", track_order=False) as store:
        images = store.create_dataset(
            "images", shape=(len(jobs), 3, height, width), dtype="uint8",
            chunks=(1, 3, height, width), track_times=False,
        )
        kept = np.zeros(len(jobs), dtype=bool)
        row = 0
        with ProcessPoolExecutor(workers) as pool:
            for index, result in enumerate(pool.map(_decode, jobs, chunksize=64)):
                if isinstance(result, str):
                    bad.append(f"{jobs[index][0]} ({result})")
                    continue
                images[row] = result
                kept[index] = True
                row += 1
        if bad and cfg.on_bad_image == "error":
            listing = "\n  ".join(bad[:20]) + ("\n  ..." if len(bad) > 20 else "")
            raise CCReIDError(
                f"data set {name!r}: {len(bad)} image(s) cannot be decoded:\n  {listing}\n"
                f"Replace them, or set datasets.{name}.on_bad_image: skip to leave them out."
            )
        images.resize(row, axis=0)
    samples = samples[kept].reset_index(drop=True)
    if bad:
        parsed = ParsedDataset(samples=samples, protocols=parsed.protocols)
        summary = validate(parsed, name)
    (folder / SKIPPED).write_text(json.dumps(bad, indent=1) + "\n")
    samples.to_csv(folder / SAMPLES, index=False)
    (folder / PROTOCOLS).write_text(
        json.dumps([dataclasses.asdict(p) for p in parsed.protocols], indent=2) + "\n"
    )
    (folder / SUMMARY).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary


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
        protocols = [Protocol(**{**p, "cameras": tuple(p["cameras"]) if p["cameras"] else None})
                     for p in json.loads((folder / PROTOCOLS).read_text())]
    except (OSError, ValueError, TypeError, KeyError) as error:  # ValueError: bad CSV, JSON or text
        raise CCReIDError(f"{folder}: damaged prepared data set ({type(error).__name__}: {error}); "
                          "delete the folder and re-run `ccreid prepare`") from None
    missing = sorted({*SAMPLE_COLUMNS, "label", "clothes_label"} - set(samples.columns))
    if missing:
        raise CCReIDError(f"{folder / SAMPLES}: missing column(s) {missing}; delete the folder and re-run `ccreid prepare`")
    return PreparedData(samples=samples, protocols=protocols, images_path=folder / IMAGES)

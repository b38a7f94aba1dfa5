"""Building the prepared store (ccreid.data.prepared): a raw data set parsed and validated, every
image decoded and resized once by a process pool and written one at a time (memory stays
flat), with the tables beside it."""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from PIL import Image

from ccreid.core.errors import CCReIDError
from ccreid.core.paths import IMAGES, PROTOCOLS, SAMPLES, SKIPPED, SUMMARY
from ccreid.core.registry import Registry
from ccreid.core.schema import DatasetCfg
from ccreid.data.layouts.base import ParsedDataset, protocols_to_json
from ccreid.data.layouts.validate import validate


def _missing_root_message(name: str, cfg: DatasetCfg) -> str:
    how = cfg.obtain or "see docs/datasets.md for where to obtain it"
    return (
        f"data set {name!r}: raw root {cfg.root} not found. Place the data set there in its "
        f"published layout ({cfg.layout}) or change datasets.{name}.root in params.yaml; {how}."
    )


def parse_dataset(name: str, cfg: DatasetCfg, registry: Registry) -> tuple[ParsedDataset, dict]:
    """Parse and validate the raw data set with its layout's parser (from `registry`); returns the
    parse and its summary."""
    member = registry.member("layout", cfg.layout, f"datasets.{name}.layout")
    parser = registry.load(member)
    root = Path(cfg.root)
    if not root.is_dir():
        raise CCReIDError(_missing_root_message(name, cfg))
    try:
        parsed = parser(root)
    except CCReIDError as error:
        fits = _layouts_that_fit(root, parser, registry)
        if not fits:
            raise
        raise CCReIDError(
            f"{error}\n{root} has the {fits[0]!r} layout instead: if that is what it holds, set "
            f"datasets.{name}.layout: {fits[0]} in params.yaml; otherwise point datasets.{name}.root "
            f"at a copy in the {cfg.layout} layout."
        ) from None
    return parsed, validate(parsed, name)


def _layouts_that_fit(root: Path, failed, registry: Registry) -> list[str]:
    """The other layouts that parse `root` (only asked after its own layout failed: this imports
    every parser)."""
    fits = []
    for layout in registry.names("layout"):
        parser = registry.load(registry.member("layout", layout))
        if parser is failed:
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
        with Image.open(path) as source:
            image = source.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
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


def write_prepared(
    name: str, cfg: DatasetCfg, parsed: ParsedDataset, summary: dict, folder: Path, workers: int | None
) -> dict:
    """Decode every image into ``folder`` and write the tables; returns the (final) summary."""
    samples = _labelled(parsed.samples.reset_index(drop=True))
    height, width = cfg.size
    root = Path(cfg.root)
    jobs = [(str(root / p), height, width) for p in samples["path"]]
    workers = workers or min(len(os.sched_getaffinity(0)), 8)
    bad: list[str] = []
    with h5py.File(folder / IMAGES, "w", track_order=False) as store:
        images = store.create_dataset(
            "images",
            shape=(len(jobs), 3, height, width),
            dtype="uint8",
            chunks=(1, 3, height, width),
            track_times=False,
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
    (folder / PROTOCOLS).write_text(protocols_to_json(parsed.protocols, indent=2) + "\n")
    (folder / SUMMARY).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary

"""Stage `extract`: embeddings of every evaluation split into ``features.h5``.

One HDF5 group per split a protocol uses (PRCC: gallery, query_sc, query_cc), each with
``feats`` (float32 N×D, L2-normalised, averaged with the horizontally flipped image when
eval.flip; precision eval.amp), ``pids``, ``camids``, ``clothes`` (int64) and ``paths``. The data set's protocols are
stored as a JSON attribute so evaluation needs nothing else.
"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import h5py
import numpy as np
import torch

from ccreid import fingerprint
from ccreid.atomic import atomic_path, exclusive
from ccreid.config import EXTRACT_KEYS
from ccreid.datasets import Protocol
from ccreid.images import read_rows
from ccreid.prepare import load_prepared
from ccreid.devices import pick_device
from ccreid.embedding import embed
from ccreid.models.checkpoint import load_model



def extract(prepared_dir: Path, model_path: Path, eval_cfg: dict, out_path: Path, device: str | None = None) -> Path:
    prepared_dir, model_path, out_path = Path(prepared_dir), Path(model_path), Path(out_path)
    config = {key: eval_cfg[key] for key in EXTRACT_KEYS}
    expected = fingerprint.make_fingerprint(
        __name__, config, {"prepared": prepared_dir / "fingerprint.json", "model": model_path})
    with exclusive(out_path):
        if fingerprint.is_fresh(out_path, expected):
            return out_path
        data = load_prepared(prepared_dir)
        torch_device = pick_device(device)
        torch.set_num_threads(eval_cfg["cpu_threads"])
        model = load_model(model_path, torch_device)
        splits = {}
        for split in sorted({p.query for p in data.protocols} | {p.gallery for p in data.protocols}):
            rows = data.samples.index[data.samples["split"] == split].to_numpy()
            part = data.samples.loc[rows]
            splits[split] = {
                "feats": embed(model, read_rows(data.images_path, rows), eval_cfg, torch_device),
                "pids": part["pid"].to_numpy(np.int64),
                "camids": part["camid"].to_numpy(np.int64),
                "clothes": part["clothes_label"].to_numpy(np.int64),
                "paths": part["path"].tolist(),
            }
        with fingerprint.rebuilding(out_path, expected):
            write_features(out_path, data.protocols, splits)
    return out_path


def write_features(out_path: Path, protocols: list[Protocol], splits: dict[str, dict]) -> None:
    """features.h5, atomically. Built in memory and written in one go: a full disk then fails
    one plain write, where HDF5 would fail again in every object it frees."""
    buffer = io.BytesIO()
    build_features_file(buffer, protocols, splits)
    with atomic_path(out_path) as tmp:
        tmp.write_bytes(buffer.getbuffer())


def build_features_file(target, protocols: list[Protocol], splits: dict[str, dict]) -> None:
    """The HDF5 layout of features.h5 into `target` (a path or a binary file object)."""
    with h5py.File(target, "w") as store:
        store.attrs["protocols"] = json.dumps([dataclasses.asdict(p) for p in protocols])
        for name, split in splits.items():
            group = store.create_group(name)
            for key in ("feats", "pids", "camids", "clothes"):
                group.create_dataset(key, data=split[key], track_times=False)
            group.create_dataset("paths", data=split["paths"], dtype=h5py.string_dtype(), track_times=False)

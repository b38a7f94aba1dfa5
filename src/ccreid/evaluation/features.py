"""features.h5, the file between extraction and evaluation: one HDF5 group per split a protocol
uses (PRCC: gallery, query_sc, query_cc), each with ``feats`` (float32 N×D, L2-normalised),
``pids``, ``camids``, ``clothes`` (int64) and ``paths``; the data set's protocols as a JSON
attribute, so evaluation needs nothing else."""

from __future__ import annotations

import io
from pathlib import Path

import h5py

from ccreid.core.atomic import atomic_path
from ccreid.core.errors import CCReIDError
from ccreid.data.layouts.base import Protocol, protocols_from_json, protocols_to_json

SPLIT_KEYS = ("feats", "pids", "camids", "clothes")


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
        store.attrs["protocols"] = protocols_to_json(protocols)
        for name, split in splits.items():
            group = store.create_group(name)
            for key in SPLIT_KEYS:
                group.create_dataset(key, data=split[key], track_times=False)
            group.create_dataset("paths", data=split["paths"], dtype=h5py.string_dtype(), track_times=False)


def read_features(path: Path) -> tuple[dict[str, dict], list[Protocol]]:
    """All splits of a features.h5, checked; a foreign or truncated file is one clear error."""
    try:
        with h5py.File(path, "r") as store:
            protocols = protocols_from_json(store.attrs["protocols"])
            splits = {}
            for name in store:
                group = store[name]
                splits[name] = {key: group[key][()] for key in SPLIT_KEYS}
                splits[name]["paths"] = group["paths"].asstr()[()]
    except (OSError, KeyError, ValueError, TypeError) as error:
        raise CCReIDError(
            f"{path}: not a complete ccreid features file ({type(error).__name__}: {error}); "
            "delete it and re-run `ccreid extract`"
        ) from None
    for protocol in protocols:
        for split in (protocol.query, protocol.gallery):
            if split not in splits:
                raise CCReIDError(
                    f"{path}: split {split!r} of protocol {protocol.name!r} is missing; re-run `ccreid extract`"
                )
            if len(splits[split]["feats"]) == 0:
                raise CCReIDError(f"{path}: split {split!r} is empty; protocol {protocol.name!r} cannot be evaluated")
    return splits, protocols

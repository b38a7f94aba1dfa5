"""Feature I/O: features.h5 written by `ccreid extract`'s writer, read by `ccreid evaluate`'s reader.

The file holds one group per evaluation split (gallery, query_sc, query_cc), each with ``feats``
(float32 N×D, rows L2-normalised), ``pids`` / ``camids`` / ``clothes`` (int64) and ``paths``
(variable-length strings), plus the protocols as a JSON attribute. Writing calls
``ccreid.evaluation.features.write_features`` itself, reading ``ccreid.evaluation.features.read_features``. The
reference, in the same run, is ``np.save`` / ``np.load`` of the same arrays (one .npy per array,
paths as a fixed-width bytes array).

Throughput is the payload over the time: feats + the three int64 arrays + the UTF-8 bytes of
the paths (the same figure for HDF5 and .npy). Timings are medians of --repeats.

- write: what extract does (no fsync, so the data reach the page cache): the file is built in
  memory (``io.BytesIO``) and written in one go through ``ccreid.core.atomic.atomic_path``, so that a
  full disk fails one plain write (HDF5 fails again in every object it frees, and crashes);
- write, HDF5 to the file: the same layout written by HDF5 straight to a new file
  (``ccreid.evaluation.features.build_features_file`` on a path), the cost of building in memory;
- write + fsync: extract's write, then ``os.fsync``: on the disk (as far as the VM's virtual
  disk reports);
- read, warm: right after writing, with the file in the page cache (the usual case when
  evaluate follows extract);
- read, after fadvise: ``posix_fadvise(POSIX_FADV_DONTNEED)`` on the synced file first, which
  asks Linux to drop its pages from this machine's page cache. Dropping every cache needs root
  and is not portable; the hint is per file and may be ignored, and on a VM the host can still
  cache the disk, so this is "colder", not guaranteed cold.

    nice python benchmarks/hdf5_io.py [--sizes prcc large] [--dim 4096] [--repeats 3] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from ccreid.data.layouts.base import Protocol
from ccreid.evaluation.features import build_features_file, read_features, write_features

# PRCC's test split as CAL's loader counts it (71 ids): gallery = camera A, query_sc = B,
# query_cc = C. The large size is a gallery of 50k, far above any CC-ReID benchmark.
SIZES = {
    "prcc": {"gallery": 3_384, "query_sc": 3_873, "query_cc": 3_543},
    "large": {"gallery": 50_000, "query_sc": 10_000, "query_cc": 10_000},
}
PROTOCOLS = [  # PRCC's, as ccreid.data.layouts.prcc declares them
    Protocol("cc", query="query_cc", gallery="gallery", mode="cc"),
    Protocol("sc", query="query_sc", gallery="gallery", mode="sc"),
    Protocol("cc_single", query="query_cc", gallery="gallery", mode="cc", single_shot=True),
    Protocol("sc_single", query="query_sc", gallery="gallery", mode="sc", single_shot=True),
]
CAMERA = {"gallery": "A", "query_sc": "B", "query_cc": "C"}
INT_COLUMNS = ("pids", "camids", "clothes")


def make_splits(counts: dict[str, int], dim: int, rng: np.random.Generator) -> dict[str, dict]:
    """Random L2-normalised float32 features and labels shaped like extract's output."""
    splits = {}
    for split, n in counts.items():
        feats = rng.standard_normal((n, dim), dtype=np.float32)
        feats /= np.linalg.norm(feats, axis=1, keepdims=True)
        pids = rng.integers(1, 72, n).astype(np.int64)
        camids = np.full(n, "ABC".index(CAMERA[split]), dtype=np.int64)
        clothes = rng.integers(0, 142, n).astype(np.int64)
        paths = [f"rgb/test/{CAMERA[split]}/{pid:03d}/{i:05d}.jpg" for i, pid in enumerate(pids)]
        splits[split] = {"feats": feats, "pids": pids, "camids": camids, "clothes": clothes, "paths": paths}
    return splits


def payload_bytes(splits: dict[str, dict]) -> int:
    total = 0
    for part in splits.values():
        total += sum(part[key].nbytes for key in ("feats", *INT_COLUMNS))
        total += sum(len(p.encode()) for p in part["paths"])
    return total


def write_h5(splits: dict[str, dict], out_path: Path, sync: bool) -> None:
    write_features(out_path, PROTOCOLS, splits)
    if sync:
        fsync(out_path)


def write_npy(splits: dict[str, dict], folder: Path, sync: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split, part in splits.items():
        for key in ("feats", *INT_COLUMNS):
            np.save(folder / f"{split}.{key}.npy", part[key])
        np.save(folder / f"{split}.paths.npy", np.array(part["paths"], dtype="S"))
    if sync:
        for path in folder.iterdir():
            fsync(path)


def read_npy(folder: Path, names) -> dict[str, dict]:
    splits = {}
    for split in names:
        splits[split] = {key: np.load(folder / f"{split}.{key}.npy") for key in ("feats", *INT_COLUMNS)}
        splits[split]["paths"] = np.load(folder / f"{split}.paths.npy").astype(str)
    return splits


def fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def evict(paths) -> None:
    """Ask Linux to drop the (synced) files' pages from the page cache; a hint, per file."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def median_time(function, repeats: int, before=None) -> float:
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def check_same(h5: dict, npy: dict, reference: dict) -> None:
    for split, part in reference.items():
        for key in ("feats", *INT_COLUMNS):
            assert np.array_equal(h5[split][key], part[key]), f"{split}/{key}: HDF5 read differs"
            assert np.array_equal(npy[split][key], part[key]), f"{split}/{key}: .npy read differs"
        assert list(h5[split]["paths"]) == part["paths"] == list(npy[split]["paths"]), f"{split}/paths differ"


def run(counts: dict[str, int], dim: int, repeats: int, work: Path) -> dict:
    rng = np.random.default_rng(0)
    splits = make_splits(counts, dim, rng)
    megabytes = payload_bytes(splits) / 1e6
    h5_path, npy_dir = work / "features.h5", work / "npy"
    result = {"MB": megabytes}

    def clear_h5():
        h5_path.unlink(missing_ok=True)

    def clear_npy():
        shutil.rmtree(npy_dir, ignore_errors=True)

    for fmt, write, clear, files in (
        ("h5", lambda sync: write_h5(splits, h5_path, sync), clear_h5, lambda: [h5_path]),
        ("npy", lambda sync: write_npy(splits, npy_dir, sync), clear_npy, lambda: sorted(npy_dir.iterdir())),
    ):
        clear()
        write(False)  # warm-up, not timed: the process's first large write is slower (page faults)
        result[f"{fmt}_write"] = megabytes / median_time(lambda: write(False), repeats, before=clear)
        if fmt == "h5":
            result["h5_write_direct"] = megabytes / median_time(
                lambda: build_features_file(h5_path, PROTOCOLS, splits), repeats, before=clear
            )
        result[f"{fmt}_write_sync"] = megabytes / median_time(lambda: write(True), repeats, before=clear)
        if fmt == "h5":
            result["file_MB"] = h5_path.stat().st_size / 1e6
            reader = lambda: read_features(h5_path)  # noqa: E731
        else:
            reader = lambda: read_npy(npy_dir, splits)  # noqa: E731
        reader()  # the file was just written: its pages are in the cache
        result[f"{fmt}_read_warm"] = megabytes / median_time(reader, repeats)
        result[f"{fmt}_read_evicted"] = megabytes / median_time(reader, repeats, before=lambda: evict(files()))
    h5_read, _ = read_features(h5_path)
    check_same(h5_read, read_npy(npy_dir, splits), splits)
    clear_h5()
    clear_npy()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--dim", type=int, default=4096, help="embedding dim (212: 2048 max + 2048 avg)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where the temporary files go (default: the system temp dir)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        f"h5py {h5py.__version__} (HDF5 {h5py.version.hdf5_version}), numpy {np.__version__}, "
        f"load average {os.getloadavg()[0]:.1f}; MB = 10^6 bytes of payload; medians of {args.repeats}"
    )
    print(
        "| size | payload (MB) | features.h5 (MB) | h5 write | h5 write, HDF5 to the file | h5 write+fsync | h5 read, warm | "
        "h5 read, after fadvise | npy write | npy write+fsync | npy read, warm | npy read, after fadvise | "
        "h5/npy write | h5/npy read (warm) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="ccreid-hdf5-io-", dir=args.dir) as tmp:
        for key in args.sizes:
            counts = SIZES[key]
            r = run(counts, args.dim, args.repeats, Path(tmp))
            name = f"{key} ({' + '.join(f'{n:,}' for n in counts.values())}) × {args.dim}"
            cells = [
                name,
                f"{r['MB']:.0f}",
                f"{r['file_MB']:.0f}",
                *(
                    f"{r[c]:,.0f} MB/s"
                    for c in (
                        "h5_write",
                        "h5_write_direct",
                        "h5_write_sync",
                        "h5_read_warm",
                        "h5_read_evicted",
                        "npy_write",
                        "npy_write_sync",
                        "npy_read_warm",
                        "npy_read_evicted",
                    )
                ),
                f"{r['h5_write'] / r['npy_write']:.2f}×",
                f"{r['h5_read_warm'] / r['npy_read_warm']:.2f}×",
            ]
            print("| " + " | ".join(cells) + " |", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

"""Preparation speed: `ccreid.stages.prepare.prepare` on a PRCC-sized synthetic set, by worker count.

PRCC has 221 identities and 33,698 images: train 150 ids, test 71 ids (gallery = camera A,
same-clothes queries = B, clothes-changing queries = C), and a val split of the train ids.
`ccreid.stages.synth.synthesize` draws every identity in cameras A, B and C, `images_per_camera` each,
and gives val its own identities, so the PRCC-sized set here is train_ids 150, val_ids 0,
test_ids 71, images_per_camera 51: 221 × 3 × 51 = 33,813 images (PRCC + 0.3 %). They are drawn
at --source (128×64 by default) as JPEG (quality 90) and prepared to --size (default: params.yaml
datasets.prcc.size, 384×192): decode, bilinear resize, uint8 3×H×W into images.h5 (one HDF5
chunk per image), in a process pool of --workers workers while the calling process writes.

Timed, each in this one process: the synthesis (reported, not part of the goal); `prepare` from
nothing for each worker count (its output folder removed, untimed, before each); then the same
call again, which finds its fingerprint fresh and returns (parse + hash of the raw tree; median
of --repeats). The raw JPEGs are in the page cache (just written). With --scale < 1 only that
fraction of the identities is drawn and the PRCC-sized time is extrapolated linearly from the
time per image (marked).

--breakdown adds, on the same JPEGs, the parts of prepare timed alone: decoding + resizing in
this process (prepare's own `_decode`, no pool), the process pool's `map(_decode, chunksize=64)`
with every result received and dropped (decode + pickling 3×H×W uint8 through the pool's pipe,
no HDF5), per worker count, and the HDF5 writes alone (the same dataset and chunking, one
zero image per row).

    nice python benchmarks/prepare_speed.py [--scale 1.0] [--workers 1 2] [--source 128 64] [--breakdown] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import torch

from ccreid.core.config import load_params
from ccreid.core.paths import IMAGES
from ccreid.core.schema import DatasetCfg, SynthCfg
from ccreid.data.preparation import _decode
from ccreid.stages.prepare import prepare
from ccreid.stages.synth import synthesize
from common import REPO, cores

TRAIN_IDS, TEST_IDS, IMAGES_PER_CAMERA = 150, 71, 51
FULL_IMAGES = (TRAIN_IDS + TEST_IDS) * 3 * IMAGES_PER_CAMERA  # 33,813
PRCC_IMAGES = 33_698
GOAL_S = 300


def timed(function):
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def breakdown(raw: Path, size: tuple[int, int], workers_list: list[int], work: Path) -> None:
    jobs = [(str(p), *size) for p in sorted(raw.rglob("*.jpg"))]
    n = len(jobs)
    print(f"breakdown on the same {n:,} JPEGs:")
    print("| part | workers | seconds | img/s |")
    print("|---|---:|---:|---:|")
    seconds, _ = timed(lambda: [_decode(job) for job in jobs])
    print(f"| decode + resize in this process (no pool) | 0 | {seconds:.1f} | {n / seconds:.0f} |", flush=True)
    for workers in workers_list:

        def pool_only():
            with ProcessPoolExecutor(workers) as pool:
                for _ in pool.map(_decode, jobs, chunksize=64):
                    pass

        seconds, _ = timed(pool_only)
        print(
            f"| process pool, results received and dropped (no HDF5) | {workers} | {seconds:.1f} | {n / seconds:.0f} |",
            flush=True,
        )
    image = np.zeros((3, *size), dtype=np.uint8)

    def write_only():
        with h5py.File(work / "write-only.h5", "w", track_order=False) as store:
            images = store.create_dataset(
                "images", shape=(n, 3, *size), dtype="uint8", chunks=(1, 3, *size), track_times=False
            )
            for row in range(n):
                images[row] = image

    seconds, _ = timed(write_only)
    (work / "write-only.h5").unlink()
    print(f"| HDF5 writes alone (zeros) | 0 | {seconds:.1f} | {n / seconds:.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of PRCC's identities to draw")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, cores()])
    parser.add_argument(
        "--source", type=int, nargs=2, default=[128, 64], metavar=("H", "W"), help="size the JPEGs are drawn at"
    )
    parser.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=None,
        metavar=("H", "W"),
        help="prepared size (default: params.yaml datasets.prcc.size)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="no-op calls timed (median)")
    parser.add_argument("--breakdown", action="store_true", help="also time decoding, the pool and HDF5 writes alone")
    parser.add_argument("--dir", default=None, help="where the temporary files go (default: the system temp dir)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    size = tuple(args.size or load_params(REPO / "params.yaml").datasets["prcc"].size)
    train_ids = max(1, round(TRAIN_IDS * args.scale))
    test_ids = max(1, round(TEST_IDS * args.scale))
    synth_cfg = SynthCfg(
        seed=0,
        train_ids=train_ids,
        val_ids=0,
        test_ids=test_ids,
        images_per_camera=IMAGES_PER_CAMERA,
        height=args.source[0],
        width=args.source[1],
        jpeg_quality=90,
        palette_size=12,
    )
    extrapolated = args.scale != 1.0
    print(
        f"{cores()} cores, load average {os.getloadavg()[0]:.1f}; synthetic PRCC layout, "
        f"{train_ids} train + {test_ids} test ids × 3 cameras × {IMAGES_PER_CAMERA}, drawn at "
        f"{args.source[0]}×{args.source[1]}, prepared to {size[0]}×{size[1]}"
    )
    with tempfile.TemporaryDirectory(prefix="ccreid-prepare-speed-", dir=args.dir) as tmp:
        raw, out = Path(tmp) / "raw", Path(tmp) / "prepared"
        synth_s, summary = timed(lambda: synthesize(raw, synth_cfg))
        images = summary["images"]
        raw_mb = sum(p.stat().st_size for p in raw.rglob("*.jpg")) / 1e6
        cfg = DatasetCfg(layout="prcc", root=str(raw), size=size)
        mark = f" (extrapolated from {images:,})" if extrapolated else ""
        print(f"{images:,} images, {raw_mb:.0f} MB of JPEG; PRCC-sized = {FULL_IMAGES:,} images")
        print("| step | workers | seconds | img/s | PRCC-sized (s) | under 5 min? |")
        print("|---|---:|---:|---:|---:|---|")
        print(
            f"| synthesis (not part of the goal) | 1 process | {synth_s:.1f} | {images / synth_s:.0f} | "
            f"{synth_s * FULL_IMAGES / images:.0f}{mark} | |",
            flush=True,
        )
        for workers in args.workers:
            shutil.rmtree(out, ignore_errors=True)
            seconds, _ = timed(lambda: prepare("benchmark", cfg, out, workers=workers))
            prepared_gb = (out / IMAGES).stat().st_size / 1e9
            full = seconds * FULL_IMAGES / images
            print(
                f"| prepare | {workers} (+ the writer) | {seconds:.1f} | {images / seconds:.0f} | "
                f"{full:.0f}{mark} | {'yes' if full < GOAL_S else 'no'} |",
                flush=True,
            )
            noop = statistics.median(
                timed(lambda: prepare("benchmark", cfg, out, workers=workers))[0] for _ in range(args.repeats)
            )
            print(
                f"| prepare again (fresh fingerprint: no-op) | {workers} | {noop:.2f} | | "
                f"{noop * FULL_IMAGES / images:.1f}{mark} | |",
                flush=True,
            )
        print(f"images.h5: {prepared_gb:.2f} GB; load average {os.getloadavg()[0]:.1f}")
        shutil.rmtree(out, ignore_errors=True)
        if args.breakdown:
            breakdown(raw, size, args.workers, Path(tmp))
        print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

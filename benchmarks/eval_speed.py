"""Evaluation speed: ccreid.evaluation.metrics.rank_metrics against a straightforward per-query NumPy loop.

The loop sorts each query's row and reads AP / INP / CMC off the matches, with the same good /
junk rules (docs/datasets.md, "Protocols"). It runs twice: with NumPy's default argsort (on x86 with AVX-512,
NumPy >= 2 sorts 32-bit floats with SIMD, several times faster) and with the stable sort
(``kind="stable"``, what a loop needs to break ties exactly). Distances are distinct random
integers per row, as float32 (no ties: the numbers do not depend on how ties are broken);
labels are random. For every size the loop and ours must agree to 1e-6 (mAP, mINP, CMC at
1..20) before any time is printed. Where the loop would take minutes it runs on the first
queries only and its time is extrapolated linearly (the work per query is the same); the table
says so. Our time is the best of --repeats runs; "one read" is one pass over the distance
matrix (a sum), the floor for any exact method. "workspace" is the evaluation's memory bound
(chunk_elements x WORKSPACE_BYTES_PER_ELEMENT), "unchunked" what one chunk for the whole matrix
would take.

    nice python benchmarks/eval_speed.py [--sizes prcc market 10k-50k chunked] [--memory-mb 64]
        [--repeats 3] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from ccreid.evaluation.metrics import CPU_CHUNK_ELEMENTS, GPU_CHUNK_ELEMENTS, WORKSPACE_BYTES_PER_ELEMENT, rank_metrics
from common import test_helpers

reference_loop = test_helpers().reference_loop  # the tests' textbook loop is the baseline

MAX_RANK = 20


@dataclass
class Size:
    name: str
    queries: int
    gallery: int
    ids: int
    cameras: int
    mode: str
    loop_queries: int  # queries the NumPy loop is timed on (extrapolated when fewer than all)


SIZES = {
    "prcc": Size("PRCC (3k×3.5k, cc)", 3_000, 3_500, 71, 3, "cc", 3_000),
    "market": Size("Market-1501 (3,368×15,913)", 3_368, 15_913, 750, 6, "standard", 3_368),
    "10k-50k": Size("10k×50k", 10_000, 50_000, 2_500, 6, "standard", 1_000),
    "chunked": Size("20k×50k (4 GB of distances)", 20_000, 50_000, 2_500, 6, "standard", 500),
}


def distinct_random_distances(queries: int, gallery: int, rng: np.random.Generator, device) -> torch.Tensor:
    """Row i: h_i(j) for j < G, h_i a random bijection of [0, 2^24) (xor key, then odd multiplies
    and xor-shifts mod 2^24): random order, no ties, exact in float32."""
    low_bits = (1 << 24) - 1
    key, *odd = (torch.as_tensor(rng.integers(0, 1 << 24, queries), device=device)[:, None] for _ in range(3))
    odd = [2 * value + 1 for value in odd]
    j = torch.arange(gallery, device=device)
    dist = torch.empty(queries, gallery, dtype=torch.float32, device=device)
    for start in range(0, queries, 256):  # int64 temporaries in blocks
        rows = slice(start, start + 256)
        x = (j ^ key[rows]) * odd[0][rows] & low_bits
        x ^= x >> 11
        x = x * odd[1][rows] & low_bits
        dist[rows] = x ^ (x >> 13)
    return dist


def labels(size: Size, rng: np.random.Generator):
    q_pids, g_pids = rng.integers(0, size.ids, size.queries), rng.integers(0, size.ids, size.gallery)
    q_cams, g_cams = rng.integers(0, size.cameras, size.queries), rng.integers(0, size.cameras, size.gallery)
    q_clothes, g_clothes = rng.integers(0, 2, size.queries), rng.integers(0, 2, size.gallery)
    return q_pids, g_pids, q_cams, g_cams, q_clothes, g_clothes


def check_same(ours: dict, loop: dict, name: str) -> None:
    for key in ("mAP", "mINP"):
        assert abs(ours[key] - loop[key]) <= 1e-6, f"{name}: {key} {ours[key]} vs loop {loop[key]}"
    assert np.allclose(ours["cmc"], loop["cmc"], atol=1e-6, rtol=0), f"{name}: CMC differs from the loop"


def timed(function, *args, repeats: int = 1):
    """(best wall time, result); results are host numbers, so a device run is finished."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = function(*args)
        best = min(best, time.perf_counter() - start)
    return best, result


def run(size: Size, chunk_elements: int, device, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    dist = distinct_random_distances(size.queries, size.gallery, rng, device)
    q_pids, g_pids, q_cams, g_cams, q_clothes, g_clothes = labels(size, rng)
    m = size.loop_queries
    loop_args = (q_pids[:m], g_pids, q_cams[:m], g_cams, q_clothes[:m], g_clothes, size.mode)
    dist_np = dist[:m].cpu().numpy()
    ours_on_loop_queries = rank_metrics(dist[:m], *loop_args, chunk_elements=chunk_elements)
    row = {}
    for column, sort_kind in (("loop_s", None), ("stable_loop_s", "stable")):
        seconds, loop = timed(partial(reference_loop, max_rank=MAX_RANK, sort_kind=sort_kind), dist_np, *loop_args)
        check_same(ours_on_loop_queries, loop, size.name)
        row[column] = seconds * size.queries / m
    all_args = (q_pids, g_pids, q_cams, g_cams, q_clothes, g_clothes, size.mode)
    row["ours_s"], _ = timed(partial(rank_metrics, chunk_elements=chunk_elements), dist, *all_args, repeats=repeats)
    row["read_s"], _ = timed(lambda: float(dist.sum()), repeats=repeats)
    row["loop_note"] = "" if m == size.queries else f" (from {m:,} queries)"
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--memory-mb", type=float, default=64, help="cap on the evaluation's workspace")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    # The device's default chunk, unless the memory cap asks for less.
    default_chunk = GPU_CHUNK_ELEMENTS if device.type == "cuda" else CPU_CHUNK_ELEMENTS
    chunk_elements = min(default_chunk, int(args.memory_mb * 2**20 / WORKSPACE_BYTES_PER_ELEMENT))
    workspace_mb = chunk_elements * WORKSPACE_BYTES_PER_ELEMENT / 2**20
    print(
        f"device {device}, numpy {np.__version__}, torch {torch.__version__}, load average "
        f"{os.getloadavg()[0]:.1f}; on CPU ours runs its chunks on one thread, as the loop does; "
        f"workspace cap {args.memory_mb:g} MB -> {chunk_elements:,} distances per chunk "
        f"({workspace_mb:.1f} MB)"
    )
    print(
        "| size | mode | ours (s) | numpy loop (s) | ratio | numpy loop, stable sort (s) | ratio | "
        "one read (s) | workspace (MB) | unchunked workspace (GB) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for key in args.sizes:
        size = SIZES[key]
        row = run(size, chunk_elements, device, args.repeats)
        note, ours = row["loop_note"], row["ours_s"]
        cells = [
            size.name,
            size.mode,
            f"{ours:.3f}",
            f"{row['loop_s']:.2f}{note}",
            f"{row['loop_s'] / ours:.1f}×",
            f"{row['stable_loop_s']:.2f}{note}",
            f"{row['stable_loop_s'] / ours:.1f}×",
            f"{row['read_s']:.3f}",
            f"{workspace_mb:.1f}",
            f"{size.queries * size.gallery * WORKSPACE_BYTES_PER_ELEMENT / 2**30:.1f}",
        ]
        print("| " + " | ".join(cells) + " |", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

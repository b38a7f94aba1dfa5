"""Reading prepared uint8 images from ``images.h5`` by row."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch

from ccreid.errors import CCReIDError

BLOCK = 512  # rows read per HDF5 call: large sequential reads, bounded memory


def read_rows(images_path: Path, rows: np.ndarray) -> torch.Tensor:
    """Images at `rows` (any order) as one uint8 N×3×H×W tensor, read in sequential blocks."""
    rows = np.asarray(rows, dtype=np.int64)
    order = np.argsort(rows, kind="stable")
    try:
        with h5py.File(images_path, "r") as store:
            dataset = store["images"]
            out = torch.empty((len(rows), *dataset.shape[1:]), dtype=torch.uint8)
            sorted_rows = rows[order]
            for start in range(0, len(rows), BLOCK):
                wanted = sorted_rows[start:start + BLOCK]
                lo, hi = int(wanted[0]), int(wanted[-1]) + 1
                if hi - lo <= 4 * BLOCK:  # dense: one sequential read, then pick
                    block = dataset[lo:hi][wanted - lo]
                else:  # sparse: h5py point selection (needs increasing, unique rows)
                    unique, inverse = np.unique(wanted, return_inverse=True)
                    block = dataset[unique][inverse]
                out[order[start:start + BLOCK]] = torch.from_numpy(block)
    except (OSError, KeyError) as error:
        raise CCReIDError(f"{images_path}: cannot read prepared images ({error}); re-run `ccreid prepare`") from None
    return out

"""Reading prepared uint8 images from ``images.h5`` by row."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch

from ccreid.core.errors import CCReIDError

BLOCK = 512  # most rows read per HDF5 call: large sequential reads, bounded memory


class ImageStore:
    """An open ``images.h5``; `read` can be called many times (streamed training batches)."""

    def __init__(self, images_path: Path):
        self.path = Path(images_path)
        try:
            self._file = h5py.File(self.path, "r")
            self._images = self._file["images"]
        except (OSError, KeyError) as error:
            self._fail(error)

    def _fail(self, error: Exception):
        raise CCReIDError(f"{self.path}: cannot read prepared images ({error}); re-run `ccreid prepare`") from None

    @property
    def shape(self) -> tuple[int, ...]:
        """N×3×H×W."""
        return tuple(self._images.shape)

    def read(self, rows: np.ndarray) -> torch.Tensor:
        """Images at `rows` (any order, repeats allowed) as one uint8 N×3×H×W tensor.

        Each run of consecutive rows is read as one slice of at most BLOCK rows: sequential for a
        whole split, one image per read for a sparse training batch. (h5py's point selection,
        the alternative for sparse rows, is about a hundred times slower.)
        """
        rows = np.asarray(rows, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        out = torch.empty((len(rows), *self.shape[1:]), dtype=torch.uint8)
        run_ends = np.append(np.flatnonzero(np.diff(sorted_rows) > 1) + 1, len(rows))
        try:
            run_start = 0
            for run_end in run_ends:
                for first in range(run_start, run_end, BLOCK):
                    last = min(first + BLOCK, run_end)
                    lo, hi = int(sorted_rows[first]), int(sorted_rows[last - 1]) + 1
                    block = self._images[lo:hi]
                    out[torch.from_numpy(order[first:last])] = torch.from_numpy(block[sorted_rows[first:last] - lo])
                run_start = run_end
        except (OSError, KeyError, ValueError) as error:
            self._fail(error)
        return out

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ImageStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_rows(images_path: Path, rows: np.ndarray) -> torch.Tensor:
    """Images at `rows` (any order) of ``images.h5`` as one uint8 N×3×H×W tensor."""
    with ImageStore(images_path) as store:
        return store.read(rows)

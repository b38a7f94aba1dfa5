"""Training images delivered batch by batch, in the sampler's order.

The training split is held in memory as one uint8 tensor when it fits `train.memory_budget_gb`
(per process), else streamed from ``images.h5``. Either way a background thread reads the next
batches while the model works on the current one, and pins them on CUDA so the host-to-device
copy can overlap compute. Both sources return the same bytes for the same rows, so where the
images live never changes a result.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ccreid.data.images import ImageStore

GB = 10**9


class InMemoryImages:
    """The training images as one uint8 N×3×H×W tensor; rows are positions in it."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def read(self, rows: np.ndarray) -> torch.Tensor:
        return self.images.index_select(0, torch.from_numpy(np.asarray(rows, dtype=np.int64)))

    def close(self) -> None:
        pass


class StreamedImages:
    """The training images read from ``images.h5`` on demand; row i is file row file_rows[i]."""

    def __init__(self, store: ImageStore, file_rows: np.ndarray):
        self.store, self.file_rows = store, np.asarray(file_rows, dtype=np.int64)

    def read(self, rows: np.ndarray) -> torch.Tensor:
        return self.store.read(self.file_rows[rows])

    def close(self) -> None:
        self.store.close()


def open_training_images(images_path: Path, file_rows: np.ndarray, memory_budget_gb: float):
    """The images at `file_rows` of ``images.h5``: in memory if they fit the budget, else streamed."""
    store = ImageStore(images_path)
    image_bytes = int(np.prod(store.shape[1:]))
    if len(file_rows) * image_bytes > memory_budget_gb * GB:
        return StreamedImages(store, file_rows)
    with store:
        return InMemoryImages(store.read(file_rows))


class Prefetcher:
    """Iterate over `images.read(rows)` for each of `batches`, read up to `depth` batches ahead
    by a thread. Use as a context manager: leaving it early stops the thread."""

    def __init__(self, images, batches: list[np.ndarray], depth: int = 2, pin_memory: bool = False):
        self.images, self.batches, self.pin_memory = images, batches, pin_memory
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read_ahead, name="ccreid-prefetch", daemon=True)

    def __enter__(self) -> Prefetcher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _put(self, item) -> bool:
        """Queue `item` unless asked to stop meanwhile (the consumer may be gone)."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _read_ahead(self) -> None:
        try:
            for rows in self.batches:
                batch = self.images.read(rows)
                if self.pin_memory:
                    batch = batch.pin_memory()
                if not self._put(batch):
                    return
        except BaseException as error:  # noqa: BLE001 — handed to the consumer, raised there
            self._put(error)

    def __iter__(self) -> Iterator[torch.Tensor]:
        for _ in self.batches:
            item = self._queue.get()
            if isinstance(item, BaseException):
                raise item
            yield item

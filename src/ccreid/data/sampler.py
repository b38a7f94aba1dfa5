"""P×K identity sampler: every batch holds P identities with K images each.

One epoch: each identity's images are shuffled and cut into groups of K (an identity with fewer
than K images is topped up by drawing with replacement; a last incomplete group is dropped);
batches are then filled with P groups of P distinct identities, drawn at random among the
identities that still have groups, until fewer than P such identities remain. The epoch length is
therefore about (number of training images) / (P·K) batches. Draws come from a NumPy generator
seeded by (seed, epoch), so any epoch can be replayed on its own (exact resume), and every DDP
rank computes the same batches and takes its own slice of each (ccreid.core.distributed).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ccreid.core.errors import CCReIDError


class IdentitySampler:
    def __init__(self, labels: np.ndarray, ids_per_batch: int, images_per_id: int, seed: int):
        self.labels = np.asarray(labels)
        self.p, self.k, self.seed = ids_per_batch, images_per_id, seed
        index = defaultdict(list)
        for i, label in enumerate(self.labels):
            index[int(label)].append(i)
        self.by_id = {label: np.array(rows) for label, rows in sorted(index.items())}
        if len(self.by_id) < self.p:
            raise CCReIDError(
                f"train.ids_per_batch = {self.p} but the prepared training split has only {len(self.by_id)} "
                f"identities: no P×K batch can be filled; lower train.ids_per_batch to {len(self.by_id)} or less"
            )

    def epoch(self, epoch: int) -> list[np.ndarray]:
        """The batches (arrays of row indices, length P·K) of one epoch."""
        rng = np.random.default_rng([self.seed, epoch])
        groups: dict[int, list[np.ndarray]] = {}
        for label, rows in self.by_id.items():
            rows = rng.permutation(rows)
            if len(rows) < self.k:
                rows = np.concatenate([rows, rng.choice(rows, self.k - len(rows), replace=True)])
            groups[label] = [rows[i : i + self.k] for i in range(0, len(rows) - self.k + 1, self.k)]
        batches: list[np.ndarray] = []
        while True:
            available = [label for label, chunks in groups.items() if chunks]
            if len(available) < self.p:
                return batches
            chosen = rng.choice(available, self.p, replace=False)
            batches.append(np.concatenate([groups[int(label)].pop() for label in chosen]))

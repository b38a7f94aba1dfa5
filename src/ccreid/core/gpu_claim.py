"""Which GPU a job takes on a box with several.

`snakemake --cores all --resources gpu=N` runs up to N training jobs at once (each declares
`gpu=1`), but Snakemake does not say which GPU a job should use. A job that is not told (no
--device, no torchrun, several GPUs visible) therefore claims the first GPU no other ccreid
process holds, through an exclusive lock file per GPU held for the process's lifetime; the lock
goes with the process, even when it is killed. No torch here: a claim is a file lock.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path
from typing import TextIO

_claimed: list[TextIO] = []  # open lock files: the claim lasts as long as the process


def claim_gpu(count: int, lock_dir: Path | None = None) -> int:
    """Index of the first of `count` GPUs that no other process has claimed (0 when all are)."""
    lock_dir = Path(lock_dir or os.environ.get("CCREID_LOCK_DIR", tempfile.gettempdir()))
    for index in range(count):
        handle = open(lock_dir / f"ccreid-gpu-{index}.lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        _claimed.append(handle)
        return index
    return 0

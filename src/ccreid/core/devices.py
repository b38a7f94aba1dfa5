"""Which device a stage runs on.

On a box with several GPUs, `snakemake --cores all --resources gpu=N` runs up to N training jobs
at once (each declares `gpu=1`), but Snakemake does not say which GPU a job should use. A job
that is not told (no --device, no torchrun, several GPUs visible) therefore claims the first GPU
no other ccreid process holds, through an exclusive lock file per GPU held for the process's
lifetime; the lock goes with the process, even when it is killed.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path
from typing import TextIO

import torch

_claimed: list[TextIO] = []  # open lock files: the claim lasts as long as the process

# train.amp / eval.amp: autocast precision; "off" runs float32. Autocast runs on CPU and CUDA alike.
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def channels_last(memory_format: str, device: torch.device) -> bool:
    """Whether a run uses the NHWC layout (train.memory_format, eval.memory_format)."""
    return memory_format == "channels_last" or (memory_format == "auto" and device.type == "cuda")


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


def pick_device(requested: str | None = None, local_rank: int | None = None) -> torch.device:
    """The requested device, else CUDA when present. Under torchrun a bare "cuda" means the GPU
    of the process's local rank; otherwise a free GPU is claimed (see the module docstring)."""
    device = torch.device(requested or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and device.index is None:
        if local_rank is not None:
            index = local_rank
        elif torch.cuda.device_count() > 1:
            index = claim_gpu(torch.cuda.device_count())
        else:
            index = 0
        device = torch.device("cuda", index)
    return device

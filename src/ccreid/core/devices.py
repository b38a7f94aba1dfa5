"""Which device a stage runs on, and how it computes there (autocast types, memory layout).
Several GPUs: a job that is not told which one claims a free one (core/gpu_claim.py)."""

from __future__ import annotations

import torch

from ccreid.core.gpu_claim import claim_gpu

# train.amp / eval.amp: autocast precision; "off" runs float32. Autocast runs on CPU and CUDA alike.
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def channels_last(memory_format: str, device: torch.device) -> bool:
    """Whether a run uses the NHWC layout (train.memory_format, eval.memory_format)."""
    return memory_format == "channels_last" or (memory_format == "auto" and device.type == "cuda")


def pick_device(requested: str | None = None, local_rank: int | None = None) -> torch.device:
    """The requested device, else CUDA when present. Under torchrun a bare "cuda" means the GPU
    of the process's local rank; otherwise a free GPU is claimed (core/gpu_claim.py)."""
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

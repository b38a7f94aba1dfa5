"""The input every model takes: float images, ImageNet-normalised (the statistics the pretrained
backbones were trained with). Training (data/augment.py) and extraction (evaluation/embedding.py)
both normalise here, so extraction's code holds none of the augmentation."""

from __future__ import annotations

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize_(images: torch.Tensor, value_range: float) -> torch.Tensor:
    """In place: float images in [0, value_range] → ImageNet-normalised (one multiply, one add)."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return images.mul_(1.0 / (value_range * std)).add_(-mean / std)


def as_float(images: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 → torch's default float dtype (values 0..255), into `out` when it fits."""
    dtype = torch.get_default_dtype()
    if out is None or out.shape != images.shape or out.device != images.device or out.dtype != dtype:
        out = torch.empty(images.shape, dtype=dtype, device=images.device)
    return out.copy_(images)


def to_normalized_float(images: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 N×3×H×W → float, ImageNet-normalised (shared by training and extraction)."""
    return normalize_(as_float(images, out), 255.0)

"""Training augmentation applied to whole batches on the training device.

Batches arrive as uint8 N×3×H×W. Every random parameter of a batch (flip, crop offset, erasing
box) is drawn first, as a handful of numbers from torch's CPU generator: the draws are the same
on every device, the saved RNG state reproduces them, and the image work needs no host-device
round trip to learn them. The image work is then as few passes as possible:

- geometry (horizontal flip, CAL's "upscale by 1.125 then random crop", nearest neighbour) is one
  row gather and one column gather on uint8 — a quarter of the memory traffic of float and no
  interpolation pass;
- float conversion and ImageNet normalisation are one copy and one multiply-add, written into a
  buffer the caller may keep between batches (a fresh 57 MB float batch at 64×384×192 costs more
  in page faults than the arithmetic);
- random erasing fills the drawn rectangles with 0 (the mean colour after normalisation, as
  CAL's erasing): a slice per erased image, not a pass over the batch.
Kornia's colour jitter and grayscale, when switched on, run on [0, 1] floats before
normalisation. The erasing boxes follow Kornia 0.9's RandomErasing sampling (area uniform in
`area`, aspect ratio uniform in [aspect_min, 1] or [1, aspect_max] with equal chance, sides
rounded and clamped to the image, position uniform).
"""

from __future__ import annotations

import kornia.augmentation as K
import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize_(images: torch.Tensor, value_range: float) -> torch.Tensor:
    """In place: float images in [0, value_range] → ImageNet-normalised (one multiply, one add)."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return images.mul_(1.0 / (value_range * std)).add_(-mean / std)


def as_float(images: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 → float32 (values 0..255), into `out` when it has the right shape and device."""
    if out is None or out.shape != images.shape or out.device != images.device:
        out = torch.empty(images.shape, dtype=torch.float32, device=images.device)
    return out.copy_(images)


def to_normalized_float(images: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 N×3×H×W → float, ImageNet-normalised (shared by training and extraction)."""
    return normalize_(as_float(images, out), 255.0)


class FlipCrop:
    """Random horizontal flip and, with probability `crop_p`, a nearest-neighbour upscale by
    `scale` followed by a random H×W crop, as per-image row and column indices."""

    def __init__(self, flip_p: float, crop_p: float, scale: float):
        self.flip_p, self.crop_p, self.scale = flip_p, crop_p, scale

    def _axis_index(self, n: int, length: int, cropped: torch.Tensor) -> torch.Tensor:
        big = int(round(length * self.scale))
        offset = torch.floor(torch.rand(n) * (big - length + 1)).long()
        positions = torch.arange(length)[None, :] + offset[:, None]
        scaled = torch.clamp((positions.float() / self.scale).long(), max=length - 1)
        return torch.where(cropped[:, None], scaled, torch.arange(length).expand(n, length))

    def draw(self, n: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Source row (N×H) and column (N×W) of every output pixel, drawn on the CPU."""
        cropped = torch.rand(n) < self.crop_p
        rows = self._axis_index(n, height, cropped)
        cols = self._axis_index(n, width, cropped)
        flipped = torch.rand(n) < self.flip_p
        return rows, torch.where(flipped[:, None], cols.flip(1), cols)


def gather_pixels(images: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """out[n, c, i, j] = images[n, c, rows[n, i], cols[n, j]] (any dtype, contiguous input)."""
    n, c, h, w = images.shape
    # Rows: whole W-long lines of the (N·C·H)×W view, i.e. memcpy-sized pieces.
    plane_start = torch.arange(n * c, device=rows.device).view(n, c, 1) * h
    lines = images.reshape(n * c * h, w).index_select(0, (plane_start + rows[:, None, :]).view(-1))
    return lines.view(n, c, h, w).gather(3, cols.view(n, 1, 1, w).expand(n, c, h, w))


class RandomErasing:
    """Kornia 0.9's RandomErasing boxes (see the module docstring), filled with `value`."""

    def __init__(self, p: float, area: tuple[float, float], aspect: tuple[float, float], value: float = 0.0):
        self.p, self.area, self.aspect, self.value = p, area, aspect, value

    def draw(self, n: int, height: int, width: int) -> list[tuple[int, int, int, int, int]]:
        """(image, top, left, box height, box width) of every erased image, drawn on the CPU."""
        erased = torch.rand(n) < self.p
        low, high = self.aspect
        target_area = (self.area[0] + torch.rand(n) * (self.area[1] - self.area[0])) * (height * width)
        if low < 1.0 < high:
            below = low + torch.rand(n) * (1.0 - low)
            above = 1.0 + torch.rand(n) * (high - 1.0)
            aspect = torch.where(torch.rand(n).round().bool(), below, above)
        else:
            aspect = low + torch.rand(n) * (high - low)
        box_h = torch.round((target_area * aspect).sqrt()).clamp(1, height).long()
        box_w = torch.round((target_area / aspect).sqrt()).clamp(1, width).long()
        left = (torch.rand(n) * (width - box_w + 1)).floor().long()
        top = (torch.rand(n) * (height - box_h + 1)).floor().long()
        boxes = torch.stack([torch.arange(n), top, left, box_h, box_w], dim=1)[erased]
        return [tuple(box) for box in boxes.tolist()]

    def apply_(self, images: torch.Tensor, boxes: list[tuple[int, int, int, int, int]]) -> torch.Tensor:
        for index, top, left, box_h, box_w in boxes:
            images[index, :, top:top + box_h, left:left + box_w] = self.value
        return images


class BatchAugment(nn.Module):
    """The `augment` section of params.yaml as one module: uint8 batch in, normalised float out."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.geometry = FlipCrop(cfg["flip"], cfg["crop"]["p"], cfg["crop"]["scale"])
        jitter = cfg["color_jitter"]
        photometric = []
        if jitter["p"] > 0:
            photometric.append(K.ColorJitter(jitter["brightness"], jitter["contrast"],
                                             jitter["saturation"], jitter["hue"], p=jitter["p"]))
        if cfg["grayscale"] > 0:
            photometric.append(K.RandomGrayscale(p=cfg["grayscale"]))
        self.photometric = nn.Sequential(*photometric) if photometric else None
        erasing = cfg["erasing"]
        # Applied after normalisation: fill value 0 is the mean colour (as CAL's erasing).
        self.erasing = RandomErasing(erasing["p"], tuple(erasing["area"]), tuple(erasing["aspect"]))

    @torch.no_grad()
    def forward(self, images: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Augment a uint8 batch. `out`, a float32 batch of the same shape, is reused for the
        result when given (its previous content is overwritten)."""
        n, _, height, width = images.shape
        rows, cols = self.geometry.draw(n, height, width)
        boxes = self.erasing.draw(n, height, width)
        device = images.device
        pixels = gather_pixels(images.contiguous(), rows.to(device), cols.to(device))
        if self.photometric is None:
            batch = to_normalized_float(pixels, out)
        else:
            batch = normalize_(self.photometric(as_float(pixels, out).div_(255.0)), 1.0)
        return self.erasing.apply_(batch, boxes)

"""Training augmentation applied to whole batches on the training device.

Batches arrive as uint8 N×3×H×W. Every random parameter of a batch (flip, crop offset, erasing
box) is drawn first, as a handful of numbers from torch's CPU generator: the draws are the same
on every device, the saved RNG state reproduces them, and the image work needs no host-device
round trip to learn them. Under DDP every rank draws the parameters of the whole global batch and
applies its own slice, so N processes augment exactly as one process does.

The recipe is CAL's (docs/recipe.md), each step with its switch:
- horizontal flip; with probability `crop.p` an upscale by `crop.scale` (bilinear, as CAL's PIL
  resize; `nearest` is the cheaper alternative) and a random H×W window whose offset is
  round(U(0, room)), as CAL draws it. Geometry is per-axis index gathers: nearest is one row and
  one column gather on uint8; bilinear blends two gathered neighbours per axis in float, for the
  cropped images only (the others are at most flipped: one column gather);
- float conversion and ImageNet normalisation, written into a buffer the caller may keep between
  batches (a fresh 57 MB float batch at 64×384×192 costs more in page faults than the arithmetic);
- random erasing after normalisation, filled with `erasing.fill` per channel (CAL writes the
  CIFAR mean 0.4914, 0.4822, 0.4465 into the normalised tensor). Sampling `cal`: area
  U(area) of the image, aspect U(aspect), h = round(√(A·r)), w = round(√(A/r)); a box that does not
  fit (h < H and w < W) is redrawn, up to 100 tries, else the image is left as is. Sampling
  `kornia` (Kornia 0.9's RandomErasing): aspect from [low, 1] or [1, high] with equal chance,
  sides clamped to the image.
`augment.extra` names more augmentations — any class of `kornia.augmentation` (ColorJiggle,
RandomGrayscale, RandomAffine, ...) or a plugin's `@augmentation("name")` member, which follows
Kornia's augmentation API — each with its keyword arguments. They run in their order on the
device, on [0, 1] floats between the geometry and the normalisation. Their parameters too are
drawn for the whole global batch (Kornia's `forward_parameters`, on the device) and each process
applies its own slice of them, so DDP stays equal to one process.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import kornia.augmentation as K
import torch
from torch import nn

from ccreid.core.errors import CCReIDError
from ccreid.core.registry import Registry, member_ref, registry
from ccreid.core.schema import AugmentCfg
from ccreid.data.normalization import as_float, normalize_

ERASING_TRIES = 100  # CAL's RandomErasing gives up after 100 boxes that do not fit


class AxisSampling:
    """Where every output line of one axis comes from: source line `low`, blended with `high` by
    `weight` (out = (1 - weight)·low + weight·high); nearest neighbour has weight 0. `blends`: the
    images whose lines are blends (the cropped ones); the others' lines are source lines as they
    are (`low`, `weight` 0)."""

    def __init__(self, low: torch.Tensor, high: torch.Tensor, weight: torch.Tensor, blends: torch.Tensor):
        self.low, self.high, self.weight, self.blends = low, high, weight, blends

    def flipped(self, mask: torch.Tensor) -> AxisSampling:
        def flip(tensor):
            return torch.where(mask[:, None], tensor.flip(1), tensor)

        return AxisSampling(flip(self.low), flip(self.high), flip(self.weight), self.blends)

    def __getitem__(self, rows: slice | torch.Tensor) -> AxisSampling:
        return AxisSampling(self.low[rows], self.high[rows], self.weight[rows], self.blends[rows])


class FlipCrop:
    """Random horizontal flip and, with probability `crop_p`, an upscale by `scale` followed by a
    random H×W window (CAL's RandomCroping), as per-image source lines of each axis."""

    def __init__(self, flip_p: float, crop_p: float, scale: float, interpolation: str = "bilinear"):
        self.flip_p, self.crop_p, self.scale, self.interpolation = flip_p, crop_p, scale, interpolation

    def _axis(self, n: int, length: int, cropped: torch.Tensor) -> AxisSampling:
        big = int(round(length * self.scale))
        offset = torch.round(torch.rand(n) * (big - length)).long()
        position = torch.arange(length)[None, :] + offset[:, None]  # in the upscaled image
        identity = torch.arange(length).expand(n, length)
        if self.interpolation == "nearest":
            low = torch.clamp((position.float() * length / big).long(), max=length - 1)
            low = torch.where(cropped[:, None], low, identity)
            return AxisSampling(low, low, torch.zeros(n, length), torch.zeros(n, dtype=torch.bool))
        # Bilinear with pixel centres at +0.5 (PIL's and torch's align_corners=False), edges clamped.
        source = ((position.float() + 0.5) * length / big - 0.5).clamp(0, length - 1)
        low = source.floor().long()
        high = torch.clamp(low + 1, max=length - 1)
        weight = torch.where(cropped[:, None], source - low, torch.zeros(()))
        return AxisSampling(
            torch.where(cropped[:, None], low, identity), torch.where(cropped[:, None], high, identity), weight, cropped
        )

    def draw(self, n: int, height: int, width: int) -> tuple[AxisSampling, AxisSampling]:
        """Rows (N×H) and columns (N×W) of every output pixel, drawn on the CPU."""
        cropped = torch.rand(n) < self.crop_p
        rows = self._axis(n, height, cropped)
        cols = self._axis(n, width, cropped)
        flipped = torch.rand(n) < self.flip_p
        return rows, cols.flipped(flipped)


def gather_rows(images: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """out[n, c, i, :] = images[n, c, rows[n, i], :] (any dtype, contiguous input): whole W-long
    lines of the (N·C·H)×W view, i.e. memcpy-sized pieces."""
    n, c, h, w = images.shape
    plane_start = torch.arange(n * c, device=rows.device).view(n, c, 1) * h
    lines = images.reshape(n * c * h, w).index_select(0, (plane_start + rows[:, None, :]).view(-1))
    return lines.view(n, c, h, w)


def gather_cols(images: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """out[n, c, :, j] = images[n, c, :, cols[n, j]]."""
    n, c, h, w = images.shape
    return images.gather(3, cols.view(n, 1, 1, w).expand(n, c, h, w))


def gather_pixels(images: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """out[n, c, i, j] = images[n, c, rows[n, i], cols[n, j]] (any dtype, contiguous input)."""
    return gather_cols(gather_rows(images, rows), cols)


def resample(images: torch.Tensor, rows: AxisSampling, cols: AxisSampling) -> torch.Tensor:
    """Float images resampled along both axes (two gathered neighbours and a blend per axis).
    Images whose lines are no blends (not cropped, at most flipped) only have their columns
    reordered: a line blended with itself at weight 0 is that line, exactly, so the work of the
    blends is spent on the cropped images alone (about half the batch at CAL's p 0.5)."""
    device = images.device
    out = gather_cols(images, cols.low.to(device))
    cropped = rows.blends.nonzero().squeeze(1)
    if len(cropped):
        rows, cols = rows[cropped], cols[cropped]
        part = images.index_select(0, cropped.to(device))
        m, _, h, w = part.shape
        vertical = torch.lerp(
            gather_rows(part, rows.low.to(device)),
            gather_rows(part, rows.high.to(device)),
            rows.weight.to(device, images.dtype).view(m, 1, h, 1),
        )
        out[cropped.to(device)] = torch.lerp(
            gather_cols(vertical, cols.low.to(device)),
            gather_cols(vertical, cols.high.to(device)),
            cols.weight.to(device, images.dtype).view(m, 1, 1, w),
        )
    return out


class RandomErasing:
    """Random erasing boxes (sampling `cal` or `kornia`, see the module docstring), filled with
    `fill` per channel."""

    def __init__(
        self,
        p: float,
        area: tuple[float, float],
        aspect: tuple[float, float],
        sampling: str = "cal",
        fill: tuple[float, float, float] = (0.0, 0.0, 0.0),
    ):
        self.p, self.area, self.aspect, self.sampling, self.fill = p, area, aspect, sampling, fill

    def _uniform(self, shape, bounds: tuple[float, float]) -> torch.Tensor:
        return bounds[0] + torch.rand(shape) * (bounds[1] - bounds[0])

    def _cal_boxes(self, n: int, height: int, width: int) -> tuple[torch.Tensor, ...]:
        target_area = self._uniform((n, ERASING_TRIES), self.area) * (height * width)
        aspect = self._uniform((n, ERASING_TRIES), self.aspect)
        box_h = torch.round((target_area * aspect).sqrt()).long()
        box_w = torch.round((target_area / aspect).sqrt()).long()
        fits = (box_h < height) & (box_w < width)
        first = fits.long().argmax(dim=1, keepdim=True)  # the first try that fits
        return fits.any(dim=1), box_h.gather(1, first)[:, 0], box_w.gather(1, first)[:, 0]

    def _kornia_boxes(self, n: int, height: int, width: int) -> tuple[torch.Tensor, ...]:
        low, high = self.aspect
        target_area = self._uniform(n, self.area) * (height * width)
        if low < 1.0 < high:
            below, above = self._uniform(n, (low, 1.0)), self._uniform(n, (1.0, high))
            aspect = torch.where(torch.rand(n).round().bool(), below, above)
        else:
            aspect = self._uniform(n, self.aspect)
        box_h = torch.round((target_area * aspect).sqrt()).clamp(1, height).long()
        box_w = torch.round((target_area / aspect).sqrt()).clamp(1, width).long()
        return torch.ones(n, dtype=torch.bool), box_h, box_w

    def draw(self, n: int, height: int, width: int) -> list[tuple[int, int, int, int, int]]:
        """(image, top, left, box height, box width) of every erased image, drawn on the CPU."""
        erased = torch.rand(n) < self.p
        boxes = self._cal_boxes if self.sampling == "cal" else self._kornia_boxes
        found, box_h, box_w = boxes(n, height, width)
        # position uniform over the places the box fits (CAL: randint(0, H - h), both ends included)
        top = (torch.rand(n) * (height - box_h + 1)).floor().long()
        left = (torch.rand(n) * (width - box_w + 1)).floor().long()
        chosen = torch.stack([torch.arange(n), top, left, box_h, box_w], dim=1)[erased & found]
        return [tuple(box) for box in chosen.tolist()]

    def apply_(self, images: torch.Tensor, boxes: list[tuple[int, int, int, int, int]]) -> torch.Tensor:
        fill = torch.tensor(self.fill, dtype=images.dtype, device=images.device).view(3, 1, 1)
        for index, top, left, box_h, box_w in boxes:
            images[index, :, top : top + box_h, left : left + box_w] = fill
        return images


# Parameters of a Kornia augmentation that are not one value per image: kept whole by every shard.
WHOLE_BATCH_PARAMETERS = ("order", "forward_input_shape")
PROBE = (2, 3, 32, 16)  # the batch an extra augmentation is checked on when built


def build_extra(spec: Any, index: int, registry: Registry, experiment: str) -> K.AugmentationBase2D:
    """One `augment.extra` entry, checked: a Kornia 2-D augmentation that keeps the batch's shape."""
    key = f"augment.extra[{index}]"
    name, arguments = member_ref(spec)
    member = registry.member("augmentation", name, key)
    registry.check_arguments(member, arguments, key)
    where = f"experiment {experiment!r}: key '{key}': augmentation {name!r} ({member.where})"
    try:
        module = registry.load(member)(**arguments)
    except CCReIDError:
        raise
    except Exception as error:  # noqa: BLE001 — whatever a constructor raises on its arguments
        raise CCReIDError(f"{where} refused its arguments {arguments}: {type(error).__name__}: {error}") from None
    if not isinstance(module, K.AugmentationBase2D):
        raise CCReIDError(f"{where}: an augmentation is a kornia.augmentation.AugmentationBase2D")
    probe = torch.rand(PROBE, generator=torch.Generator().manual_seed(0))
    try:
        with torch.random.fork_rng(devices=[]):  # the check draws nothing from the training's generator
            out = module(probe)
    except Exception as error:  # noqa: BLE001
        raise CCReIDError(f"{where}: fails on a batch of shape {PROBE}: {type(error).__name__}: {error}") from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != PROBE:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise CCReIDError(f"{where}: expected an output of shape {PROBE} (the input's), got {got}")
    return module


def shard_parameters(params: dict, shard: slice, total: int, local_shape: torch.Size) -> dict:
    """This shard's slice of parameters drawn for a global batch of `total` images."""
    sliced = {}
    for key, value in params.items():
        per_image = isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == total
        sliced[key] = value[shard] if per_image and key not in WHOLE_BATCH_PARAMETERS else value
    sliced["forward_input_shape"] = torch.tensor(local_shape, dtype=torch.long)
    return sliced


class BatchAugment(nn.Module):
    """The `augment` section of params.yaml as one module: uint8 batch in, normalised float out.
    Its `extra` members come from `members` (default: ccreid's and Kornia's); errors name `experiment`."""

    def __init__(self, cfg: AugmentCfg, members: Registry | None = None, experiment: str = "?"):
        super().__init__()
        members = members or registry()
        crop = cfg.crop
        self.geometry = FlipCrop(cfg.flip, crop.p, crop.scale, crop.interpolation)
        self.extra = nn.ModuleList(build_extra(spec, i, members, experiment) for i, spec in enumerate(cfg.extra))
        erasing = cfg.erasing
        self.erasing = RandomErasing(erasing.p, erasing.area, erasing.aspect, erasing.sampling, erasing.fill)

    def _extra(self, batch: torch.Tensor, mine: slice, total: int) -> torch.Tensor:
        """The extra augmentations on [0, 1] floats, each with this shard's slice of parameters drawn
        for the whole global batch."""
        for augmentation in cast(Iterable[K.AugmentationBase2D], self.extra):
            params = augmentation.forward_parameters(torch.Size((total, *batch.shape[1:])))
            if total != len(batch):
                params = shard_parameters(params, mine, total, batch.shape)
            batch = augmentation(batch, params=params)
        return batch

    @torch.no_grad()
    def forward(
        self, images: torch.Tensor, out: torch.Tensor | None = None, shard: int = 0, shards: int = 1
    ) -> torch.Tensor:
        """Augment a uint8 batch: shard `shard` of a global batch of `shards` equal shards (the
        parameters of the whole global batch are drawn, this shard's are applied). `out`, a
        float32 batch of the same shape, is reused for the result when given."""
        n, _, height, width = images.shape
        mine = slice(shard * n, (shard + 1) * n)
        rows, cols = self.geometry.draw(n * shards, height, width)
        rows, cols = rows[mine], cols[mine]
        boxes = [
            (index - mine.start, top, left, box_h, box_w)
            for index, top, left, box_h, box_w in self.erasing.draw(n * shards, height, width)
            if mine.start <= index < mine.stop
        ]
        device = images.device
        if self.geometry.interpolation == "nearest":
            pixels = gather_pixels(images.contiguous(), rows.low.to(device), cols.low.to(device))
            batch = as_float(pixels, out)
        else:
            batch = resample(as_float(images.contiguous()), rows, cols)
            if out is not None and out.shape == batch.shape and out.device == batch.device and out.dtype == batch.dtype:
                batch = out.copy_(batch)
        if len(self.extra) == 0:
            batch = normalize_(batch, 255.0)
        else:
            batch = normalize_(self._extra(batch.div_(255.0), mine, n * shards), 1.0)
        return self.erasing.apply_(batch, boxes)

"""Batch augmentation: semantics of each step, determinism from the seed, the reused buffer."""

from __future__ import annotations

import math
import random

import pytest
import torch
import torch.nn.functional as F

from ccreid.core.schema import AugmentCfg
from ccreid.data.augment import (
    BatchAugment,
    FlipCrop,
    RandomErasing,
    gather_cols,
    gather_pixels,
    gather_rows,
    resample,
)
from ccreid.data.normalization import IMAGENET_MEAN, IMAGENET_STD, to_normalized_float

CAL_FILL = [0.4914, 0.4822, 0.4465]
ERASE_ALL = {"p": 1.0, "area": [0.02, 0.4], "aspect": [0.3, 1 / 0.3], "sampling": "cal", "fill": CAL_FILL}
OFF = {
    "flip": 0.0,
    "crop": {"p": 0.0, "scale": 1.125, "interpolation": "bilinear"},
    "erasing": {**ERASE_ALL, "p": 0.0},
    "extra": [],
}
# Kornia augmentations by name, as params.yaml `augment.extra` gives them: photometric, geometric,
# and one whose parameters include a non-per-image entry (ColorJiggle's `order`).
KORNIA_EXTRA = [
    {"name": "ColorJiggle", "brightness": 0.2, "contrast": 0.15, "saturation": 0.1, "hue": 0.05, "p": 0.7},
    {"name": "RandomGrayscale", "p": 0.5},
    {"name": "RandomAffine", "degrees": 10.0, "translate": [0.1, 0.1], "p": 0.5},
]


def config(**changes) -> AugmentCfg:
    """Every augmentation off but the ones `changes` sets, typed as a run reads them."""
    return AugmentCfg.model_validate({**OFF, **changes})


def images(n: int = 6, height: int = 32, width: int = 16) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, height, width), generator=torch.Generator().manual_seed(3), dtype=torch.uint8)


def test_normalisation_matches_the_textbook_formula():
    batch = images()
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(to_normalized_float(batch), (batch.float() / 255 - mean) / std)
    torch.testing.assert_close(BatchAugment(config())(batch), to_normalized_float(batch), rtol=0, atol=0)


def test_flip_mirrors_every_image_at_p_1():
    batch = images()
    torch.testing.assert_close(
        BatchAugment(config(flip=1.0))(batch), to_normalized_float(batch.flip(3)), rtol=0, atol=0
    )


def test_gather_takes_each_pixel_from_its_drawn_row_and_column():
    batch = images()
    n, c, h, w = batch.shape
    rows, cols = torch.randint(0, h, (n, h)), torch.randint(0, w, (n, w))
    expected = batch[
        torch.arange(n)[:, None, None, None],
        torch.arange(c)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]
    assert torch.equal(gather_pixels(batch, rows, cols), expected)


def test_crop_is_a_window_of_the_nearest_neighbour_upscaled_image():
    augment = BatchAugment(config(crop={"p": 1.0, "scale": 1.125, "interpolation": "nearest"}))
    rows, cols = augment.geometry.draw(50, 32, 16)
    for index, length in ((rows.low, 32), (cols.low, 16)):
        assert int(index.min()) >= 0 and int(index.max()) <= length - 1
        steps = index.diff(dim=1)
        assert bool(((steps == 0) | (steps == 1)).all())  # each source line kept or repeated, in order
        assert bool((steps == 0).any(dim=1).all())  # every image really upscaled


def test_crop_is_a_window_of_the_bilinear_upscaled_image_as_cal():
    """CAL's crop: PIL bilinear upscale to round(1.125 x size), then a window at offset
    round(U(0, room)). The window must equal torch's bilinear upscale (align_corners=False, the
    pixel-centre convention PIL's bilinear uses) at some integer offset."""
    batch = images(n=8, height=64, width=32)
    augment = BatchAugment(config(crop={"p": 1.0, "scale": 1.125, "interpolation": "bilinear"}))
    out = augment(batch)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    pixels = (out * std + mean) * 255
    big = F.interpolate(batch.float(), size=(72, 36), mode="bilinear", align_corners=False)
    for image, upscaled in zip(pixels, big):
        error = min(
            float((upscaled[:, top : top + 64, left : left + 32] - image).abs().max())
            for top in range(9)
            for left in range(5)
        )
        assert error < 1e-3


def cal_erasing_boxes(count: int, height: int, width: int, seed: int) -> list[tuple[int, int]]:
    """(h, w) of the boxes CAL's RandomErasing (data/img_transforms.py) draws, written from its
    description: 100 tries of area U(0.02, 0.4)·H·W and aspect U(0.3, 1/0.3), h = round(√(A·r)),
    w = round(√(A/r)); the first box with h < H and w < W is used, none after 100 misses."""
    rng, boxes = random.Random(seed), []
    for _ in range(count):
        for _ in range(100):
            area = rng.uniform(0.02, 0.4) * height * width
            aspect = rng.uniform(0.3, 1 / 0.3)
            h, w = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
            if w < width and h < height:
                boxes.append((h, w))
                break
    return boxes


def test_erasing_boxes_follow_cal_sampling_at_384x192():
    """10^5 boxes: none clamped (every box strictly inside the image, as CAL redraws those that do
    not fit), the share of wide boxes within 1 point and the mean area within 1 % of CAL's sampling."""
    count, height, width = 100_000, 384, 192
    torch.manual_seed(0)
    ours = torch.tensor(
        [(h, w) for _, _, _, h, w in RandomErasing(**ERASE_ALL).draw(count, height, width)], dtype=torch.float64
    )
    theirs = torch.tensor(cal_erasing_boxes(count, height, width, seed=0), dtype=torch.float64)
    assert len(ours) == len(theirs) == count  # at these sizes a box always fits within 100 tries
    assert bool((ours[:, 0] < height).all()) and bool((ours[:, 1] < width).all())
    wide = [float((boxes[:, 0] < boxes[:, 1]).double().mean()) for boxes in (ours, theirs)]
    area = [float((boxes[:, 0] * boxes[:, 1]).mean()) for boxes in (ours, theirs)]
    assert abs(wide[0] - wide[1]) <= 0.01, wide  # within 1 percentage point (Kornia's sampling: ~50 %)
    assert abs(area[0] - area[1]) <= 0.01 * area[1], area


def test_kornia_sampling_clamps_boxes_to_the_image():
    """The alternative sampling (Kornia 0.9's) clamps a box that does not fit: full-width bands
    appear, which CAL's sampling never produces."""
    torch.manual_seed(0)
    boxes = RandomErasing(**{**ERASE_ALL, "sampling": "kornia"}).draw(20_000, 384, 192)
    assert any(w == 192 for *_, w in boxes)


def test_erasing_fills_one_rectangle_with_the_cal_constants():
    batch = images(n=40, height=64, width=32)
    erased = BatchAugment(config(erasing=ERASE_ALL))(batch)
    plain = to_normalized_float(batch)
    fill = torch.tensor(CAL_FILL).view(3, 1)
    for after, before in zip(erased, plain):
        changed = (after != before).any(dim=0)
        assert bool((after[:, changed] == fill).all())
        ys, xs = changed.nonzero(as_tuple=True)
        box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
        # the box's own pixels that happen to be 0 already are invisible: area from its extent
        assert 0.01 <= float(box) / (64 * 32) <= 0.45


def test_same_seed_same_batch_and_the_buffer_is_only_a_buffer():
    cfg = config(
        flip=0.5, crop={"p": 0.5, "scale": 1.125, "interpolation": "bilinear"}, erasing={**ERASE_ALL, "p": 0.5}
    )
    batch = images(n=16)
    torch.manual_seed(11)
    first = BatchAugment(cfg)(batch)
    torch.manual_seed(11)
    buffer = torch.full(first.shape, float("nan"))
    second = BatchAugment(cfg)(batch, out=buffer)
    assert second.data_ptr() == buffer.data_ptr()
    assert torch.equal(first, second)
    assert not torch.equal(first, BatchAugment(cfg)(batch))  # the generator moved on


def test_extra_augmentations_run_on_unit_range_floats_before_normalisation():
    out = BatchAugment(config(extra=[{"name": "RandomGrayscale", "p": 1.0}]))(images())
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    unit = out * std + mean  # back to [0, 1]: a grayscale image has three equal channels
    torch.testing.assert_close(unit[:, 0], unit[:, 1], rtol=0, atol=1e-5)
    torch.testing.assert_close(unit[:, 1], unit[:, 2], rtol=0, atol=1e-5)
    assert float(unit.min()) >= -1e-5 and float(unit.max()) <= 1 + 1e-5


@pytest.mark.parametrize("interpolation, extra", [("bilinear", []), ("nearest", []), ("bilinear", KORNIA_EXTRA)])
def test_shards_of_a_global_batch_are_augmented_as_the_whole_batch(interpolation, extra):
    """Under DDP rank r augments shard r of the global batch with the global batch's draws: the
    shards put together equal the single-process batch, Kornia's augmentations included."""
    cfg = config(
        flip=0.5,
        crop={"p": 0.5, "scale": 1.125, "interpolation": interpolation},
        erasing={**ERASE_ALL, "p": 0.5},
        extra=extra,
    )
    batch = images(n=16)
    torch.manual_seed(5)
    whole = BatchAugment(cfg)(batch)
    shards = []
    for rank in range(2):
        torch.manual_seed(5)
        shards.append(BatchAugment(cfg)(batch[rank * 8 : (rank + 1) * 8], shard=rank, shards=2))
    assert torch.equal(torch.cat(shards), whole)
    if extra:  # the extra augmentations changed the batch
        torch.manual_seed(5)
        assert not torch.equal(BatchAugment(cfg.model_copy(update={"extra": ()}))(batch), whole)


def test_resampling_blends_only_the_cropped_images_and_loses_no_bit():
    """The blends run on the cropped images alone; the others (at most flipped) take a column
    gather. The result equals blending every image, weight 0 included, to the last bit."""
    torch.manual_seed(2)
    rows, cols = FlipCrop(flip_p=0.5, crop_p=0.5, scale=1.125).draw(16, 32, 16)
    assert 0 < int(rows.blends.sum()) < 16  # a mixed batch
    batch = images(n=16).float()
    vertical = torch.lerp(gather_rows(batch, rows.low), gather_rows(batch, rows.high), rows.weight.view(16, 1, 32, 1))
    every = torch.lerp(
        gather_cols(vertical, cols.low), gather_cols(vertical, cols.high), cols.weight.view(16, 1, 1, 16)
    )
    assert torch.equal(resample(batch, rows, cols), every)

"""Batch augmentation: semantics of each step, determinism from the seed, the reused buffer."""

from __future__ import annotations

import torch

from ccreid.augment import IMAGENET_MEAN, IMAGENET_STD, BatchAugment, gather_pixels, to_normalized_float

OFF = {
    "flip": 0.0,
    "crop": {"p": 0.0, "scale": 1.125},
    "erasing": {"p": 0.0, "area": [0.02, 0.4], "aspect": [0.3, 3.3]},
    "color_jitter": {"p": 0.0, "brightness": 0.2, "contrast": 0.15, "saturation": 0.0, "hue": 0.0},
    "grayscale": 0.0,
}


def config(**changes) -> dict:
    return {**OFF, **changes}


def images(n: int = 6, height: int = 32, width: int = 16) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, height, width), generator=torch.Generator().manual_seed(3), dtype=torch.uint8)


def test_normalisation_matches_the_textbook_formula():
    batch = images()
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(to_normalized_float(batch), (batch.float() / 255 - mean) / std)
    torch.testing.assert_close(BatchAugment(OFF)(batch), to_normalized_float(batch), rtol=0, atol=0)


def test_flip_mirrors_every_image_at_p_1():
    batch = images()
    torch.testing.assert_close(BatchAugment(config(flip=1.0))(batch), to_normalized_float(batch.flip(3)), rtol=0, atol=0)


def test_gather_takes_each_pixel_from_its_drawn_row_and_column():
    batch = images()
    n, c, h, w = batch.shape
    rows, cols = torch.randint(0, h, (n, h)), torch.randint(0, w, (n, w))
    expected = batch[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None],
                     rows[:, None, :, None], cols[:, None, None, :]]
    assert torch.equal(gather_pixels(batch, rows, cols), expected)


def test_crop_is_a_window_of_the_nearest_neighbour_upscaled_image():
    augment = BatchAugment(config(crop={"p": 1.0, "scale": 1.125}))
    rows, cols = augment.geometry.draw(50, 32, 16)
    for index, length in ((rows, 32), (cols, 16)):
        assert int(index.min()) >= 0 and int(index.max()) <= length - 1
        steps = index.diff(dim=1)
        assert bool(((steps == 0) | (steps == 1)).all())  # each source line kept or repeated, in order
        assert bool((steps == 0).any(dim=1).all())  # every image really upscaled


def test_erasing_zeroes_one_rectangle_of_the_configured_area():
    batch = images(n=40, height=64, width=32)
    erased = BatchAugment(config(erasing={"p": 1.0, "area": [0.02, 0.4], "aspect": [0.3, 3.3]}))(batch)
    plain = to_normalized_float(batch)
    for after, before in zip(erased, plain):
        changed = (after != before).any(dim=0)
        assert bool((after[:, changed] == 0).all())
        ys, xs = changed.nonzero(as_tuple=True)
        box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
        # the box's own pixels that happen to be 0 already are invisible: area from its extent
        assert 0.01 <= float(box) / (64 * 32) <= 0.45


def test_same_seed_same_batch_and_the_buffer_is_only_a_buffer():
    cfg = config(flip=0.5, crop={"p": 0.5, "scale": 1.125},
                 erasing={"p": 0.5, "area": [0.02, 0.4], "aspect": [0.3, 3.3]})
    batch = images(n=16)
    torch.manual_seed(11)
    first = BatchAugment(cfg)(batch)
    torch.manual_seed(11)
    buffer = torch.full(first.shape, float("nan"))
    second = BatchAugment(cfg)(batch, out=buffer)
    assert second.data_ptr() == buffer.data_ptr()
    assert torch.equal(first, second)
    assert not torch.equal(first, BatchAugment(cfg)(batch))  # the generator moved on


def test_photometric_steps_run_on_unit_range_floats_before_normalisation():
    out = BatchAugment(config(grayscale=1.0))(images())
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    unit = out * std + mean  # back to [0, 1]: a grayscale image has three equal channels
    torch.testing.assert_close(unit[:, 0], unit[:, 1], rtol=0, atol=1e-5)
    torch.testing.assert_close(unit[:, 1], unit[:, 2], rtol=0, atol=1e-5)
    assert float(unit.min()) >= -1e-5 and float(unit.max()) <= 1 + 1e-5

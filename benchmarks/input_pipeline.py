"""Input pipeline throughput: images per second delivered to the model, ready to train on.

Side by side on the same JPEGs (synthetic, 384×192) and the same P×K batches (8×8):
- ccreid: prepared uint8 images (in memory, or streamed from images.h5), read ahead by a thread,
  moved to the device and augmented there as whole batches (ccreid.data.loader + ccreid.data.augment, as
  `ccreid train` does);
- CAL-style: a DataLoader whose worker processes decode each JPEG with PIL and run torchvision
  transforms per image: Resize(384, 192), CAL's random crop after a 1.125 upscale (p 0.5),
  RandomHorizontalFlip, ToTensor, Normalize, CAL's RandomErasing (p 0.5); num_workers = cores.
The first batch of each (start-up, allocation) is not timed.

    nice python benchmarks/input_pipeline.py [--train-ids 32] [--batches 30] [--device cpu]
"""

from __future__ import annotations

import argparse
import math
import random
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from ccreid.data.augment import BatchAugment
from ccreid.data.loader import Prefetcher, open_training_images
from ccreid.data.normalization import IMAGENET_MEAN, IMAGENET_STD
from ccreid.data.sampler import IdentitySampler
from common import cores, recipe, synthetic_set

HEIGHT, WIDTH = 384, 192


class CALRandomCrop:
    """CAL's RandomCroping: with probability p, bilinear upscale by 1.125, then a random crop
    back to the original size (offsets drawn uniformly and rounded)."""

    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, image: Image.Image) -> Image.Image:
        if random.uniform(0, 1) >= self.p:
            return image
        width, height = image.size
        big_w, big_h = round(width * 1.125), round(height * 1.125)
        left, top = round(random.uniform(0, big_w - width)), round(random.uniform(0, big_h - height))
        return image.resize((big_w, big_h), Image.BILINEAR).crop((left, top, left + width, top + height))


class CALRandomErasing:
    """CAL's RandomErasing on a normalised tensor: with probability p, up to 100 tries of an area
    in [0.02, 0.4] and aspect ratio in [0.3, 1/0.3] until the box fits, filled per channel."""

    def __init__(self, p: float = 0.5, area=(0.02, 0.4), min_aspect: float = 0.3, fill=(0.4914, 0.4822, 0.4465)):
        self.p, self.area, self.min_aspect, self.fill = p, area, min_aspect, fill

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if random.uniform(0, 1) >= self.p:
            return image
        _, height, width = image.shape
        for _ in range(100):
            target = random.uniform(*self.area) * height * width
            aspect = random.uniform(self.min_aspect, 1 / self.min_aspect)
            box_h, box_w = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if box_w < width and box_h < height:
                top, left = random.randint(0, height - box_h), random.randint(0, width - box_w)
                for channel, value in enumerate(self.fill):
                    image[channel, top : top + box_h, left : left + box_w] = value
                return image
        return image


class JPEGDataset(Dataset):
    def __init__(self, paths: list[Path], size: tuple[int, int] = (HEIGHT, WIDTH)):
        self.paths = paths
        self.transform = T.Compose(
            [
                T.Resize(size),
                CALRandomCrop(0.5),
                T.RandomHorizontalFlip(0.5),
                T.ToTensor(),
                T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
                CALRandomErasing(0.5),
            ]
        )

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        with Image.open(self.paths[index]) as image:
            return self.transform(image.convert("RGB"))


def timed(batches, deliver) -> float:
    """Images per second over `batches` after the first; `deliver` turns one into a device batch."""
    iterator = iter(batches)
    deliver(next(iterator))
    images, started = 0, time.perf_counter()
    for batch in iterator:
        images += len(deliver(batch))
    return images / (time.perf_counter() - started)


def ccreid_pipeline(data, train_rows, batches, budget_gb: float, device: torch.device) -> float:
    augment = BatchAugment(recipe().augment).to(device)
    images = open_training_images(data.images_path, train_rows, budget_gb)
    buffer = None

    def deliver(uint8_batch):
        nonlocal buffer
        buffer = augment(uint8_batch.to(device, non_blocking=True), out=buffer)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return buffer

    try:
        with Prefetcher(images, batches, pin_memory=device.type == "cuda") as loader:
            return timed(loader, deliver)
    finally:
        images.close()


def cal_pipeline(data, train_rows, batches, workers: int, device: torch.device) -> float:
    root = Path(data.images_path).parent.parent / "raw"
    paths = [root / p for p in data.samples.loc[train_rows, "path"]]
    loader = DataLoader(
        JPEGDataset(paths),
        batch_sampler=[b.tolist() for b in batches],
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )

    def deliver(batch):
        batch = batch.to(device, non_blocking=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return batch

    return timed(loader, deliver)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-ids", type=int, default=32)
    parser.add_argument("--images-per-camera", type=int, default=8)
    parser.add_argument("--batches", type=int, default=30, help="timed batches of 64 per pipeline (+1 untimed)")
    parser.add_argument("--workers", type=int, default=cores(), help="CAL-style DataLoader workers (default: cores)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    random.seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        data = synthetic_set(Path(tmp), HEIGHT, WIDTH, args.train_ids, args.images_per_camera)
        train_rows = data.samples.index[data.samples["split"] == "train"].to_numpy()
        sampler = IdentitySampler(data.samples.loc[train_rows, "label"].to_numpy(), 8, 8, seed=0)
        batches, epoch = [], 0
        while len(batches) < args.batches + 1:
            batches += sampler.epoch(epoch)
            epoch += 1
        batches = batches[: args.batches + 1]
        print(
            f"{len(train_rows)} training JPEGs at {HEIGHT}x{WIDTH}, {args.batches} timed batches of 64, "
            f"device {device}, {cores()} cores, torch threads {torch.get_num_threads()}"
        )
        figures = {
            "ccreid, in memory": ccreid_pipeline(data, train_rows, batches, float("inf"), device),
            "ccreid, streamed from images.h5": ccreid_pipeline(data, train_rows, batches, 0.0, device),
            f"CAL-style DataLoader ({args.workers} workers)": cal_pipeline(
                data, train_rows, batches, args.workers, device
            ),
        }
    cal = figures[f"CAL-style DataLoader ({args.workers} workers)"]
    for name, rate in figures.items():
        print(f"{name:40s} {rate:8.0f} img/s   {rate / cal:5.2f}x CAL-style")


if __name__ == "__main__":
    main()

"""ccreid's own CAL augmentation against Kornia's equivalent chain, side by side on one device.

Both take a uint8 P×K batch (64×3×384×192 by default) on the device and return it augmented and
ImageNet-normalised, as training consumes it:
- ccreid: `BatchAugment` with the baseline's `augment` section (CAL's flip, crop after a bilinear
  ×1.125 upscale, normalisation, erasing with CAL's box sampling and fill);
- Kornia 0.9: `AugmentationSequential(RandomHorizontalFlip(0.5), RandomResizedCrop(scale and ratio
  of a 1/1.125 window, p 0.5), Normalize(ImageNet), RandomErasing(the same area and aspect, p 0.5))`
  on the batch as float [0, 1]: the same geometry (a window of 1/1.125 of each side, resized to the
  image) and the same erasing ranges, but Kornia's erasing clamps its boxes and fills with one value
  (docs/ablations.md, `augment.erasing.sampling`), so it is not CAL's erasing exactly.
Each timed call is synchronised on CUDA; the first calls (allocation, kernel selection) are not
timed; the two alternate call by call so that a machine's drift hits both. Prints the medians and
the ratio Kornia / ccreid.

    python benchmarks/augment_kornia.py [--device cpu] [--batch 64] [--repeats 30]
"""

from __future__ import annotations

import argparse
import statistics
import time

import kornia.augmentation as K
import torch

from ccreid.core.schema import AugmentCfg
from ccreid.data.augment import BatchAugment
from ccreid.data.normalization import IMAGENET_MEAN, IMAGENET_STD
from common import recipe

HEIGHT, WIDTH = 384, 192


def kornia_chain(cfg: AugmentCfg) -> K.AugmentationSequential:
    """Kornia's closest chain to the baseline's `augment` section."""
    window = 1.0 / cfg.crop.scale**2  # area of the cropped window, as a fraction of the upscaled image
    erasing = cfg.erasing
    return K.AugmentationSequential(
        K.RandomHorizontalFlip(p=cfg.flip),
        K.RandomResizedCrop((HEIGHT, WIDTH), scale=(window, window), ratio=(WIDTH / HEIGHT,) * 2, p=cfg.crop.p),
        K.Normalize(mean=torch.tensor(IMAGENET_MEAN), std=torch.tensor(IMAGENET_STD)),
        K.RandomErasing(scale=tuple(erasing.area), ratio=tuple(erasing.aspect), value=erasing.fill[0], p=erasing.p),
    )


def timed(step, images: torch.Tensor, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    step(images)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def compare(device: torch.device, batch: int = 64, repeats: int = 30, warmup: int = 3) -> dict:
    """Median seconds per batch of each, and Kornia's over ccreid's."""
    cfg = recipe("212").augment
    ours = BatchAugment(cfg).to(device)
    theirs = kornia_chain(cfg).to(device)
    images = torch.randint(0, 256, (batch, 3, HEIGHT, WIDTH), dtype=torch.uint8, device=device)
    buffer = torch.empty(images.shape, device=device)

    steps = {
        "ccreid": lambda x: ours(x, out=buffer),
        "kornia": lambda x: theirs(x.float().div_(255.0)),
    }
    seconds: dict[str, list[float]] = {name: [] for name in steps}
    torch.manual_seed(0)
    with torch.no_grad():
        for index in range(warmup + repeats):
            for name, step in steps.items():
                elapsed = timed(step, images, device)
                if index >= warmup:
                    seconds[name].append(elapsed)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    return {**medians, "kornia_over_ccreid": medians["kornia"] / medians["ccreid"], "batch": batch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = compare(torch.device(args.device), args.batch, args.repeats)
    print(
        f"{args.device}, {args.threads} thread(s), {result['batch']}x3x{HEIGHT}x{WIDTH} uint8 batches, "
        f"median of {args.repeats}: ccreid {result['ccreid'] * 1e3:.1f} ms, Kornia chain {result['kornia'] * 1e3:.1f} ms "
        f"({result['kornia_over_ccreid']:.2f}x ccreid's time)"
    )


if __name__ == "__main__":
    main()

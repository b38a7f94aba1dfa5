"""Training throughput (images/s) and peak memory of the baseline (212: ResNet-50 at full width,
CAL recipe with every loss of the loop on) through ccreid's own training step.

Each image size runs in its own process so its peak memory is its own: prepared synthetic
images, the P×K batches read ahead, augmentation on the device, forward, the clothes
classifier's step, backward, both optimizers. The first steps are warm-up and not timed.
Peak memory: the process's peak resident set (getrusage) on CPU, torch.cuda.max_memory_allocated
on CUDA.

    nice python benchmarks/train_throughput.py [--sizes 64x32 384x192] [--steps 3] [--warmup 1]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from ccreid.core.devices import pick_device
from ccreid.core.schema import RunConfig
from ccreid.data.loader import Prefetcher
from ccreid.engine.trainer import Trainer
from common import cores, synthetic_set
from common import run_config as benchmark_run_config

IDS_PER_BATCH, IMAGES_PER_ID = 8, 8  # the recipe's batch of 64


def run_config(height: int, width: int) -> RunConfig:
    train = {"ids_per_batch": IDS_PER_BATCH, "images_per_id": IMAGES_PER_ID}
    return benchmark_run_config("212", "benchmark", (height, width), {"train": train})


def measure(height: int, width: int, steps: int, warmup: int, device_name: str | None) -> dict:
    device = pick_device(device_name)
    torch.use_deterministic_algorithms(True, warn_only=True)  # as `ccreid train`
    cfg = run_config(height, width)
    with tempfile.TemporaryDirectory() as tmp:
        # 16 ids × 3 cameras × 8 images: 6 batches of 64 per epoch
        data = synthetic_set(Path(tmp), height, width, train_ids=16, images_per_camera=8)
        trainer = Trainer(data, cfg, device)
        # every loss of the loop: clothes classifier and adversarial loss are on from their start epoch
        epoch = cfg.loss.clothes.start_epoch
        trainer.set_lr(epoch)
        trainer.network.train()
        batches, sampler_epoch = [], 0
        while len(batches) < warmup + steps:
            batches += trainer.sampler.epoch(sampler_epoch)
            sampler_epoch += 1
        batches = batches[: warmup + steps]
        with Prefetcher(trainer.images, batches, pin_memory=device.type == "cuda") as loader:
            for number, (rows, images) in enumerate(zip(batches, loader)):
                if number == warmup:
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    started = time.perf_counter()
                trainer.step(rows, images, epoch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    if device.type == "cuda":
        peak, where = torch.cuda.max_memory_allocated(device) / 2**30, "GPU memory allocated"
    else:
        peak, where = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "process peak RSS"  # KiB on Linux
    return {
        "size": f"{height}x{width}",
        "device": str(device),
        "steps": steps,
        "seconds_per_step": seconds / steps,
        "images_per_second": steps * len(batches[0]) / seconds,
        "peak_gib": peak,
        "peak_of": where,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["64x32", "384x192"], help="HxW, one process each")
    parser.add_argument("--steps", type=int, default=3, help="timed steps of 64 images")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--device", help="cpu, cuda, ... (default: cuda when present)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one size, print JSON
    args = parser.parse_args()
    if args.one:
        height, width = map(int, args.one.split("x"))
        print(json.dumps(measure(height, width, args.steps, args.warmup, args.device)))
        return
    print(
        f"baseline 212 (resnet50, width 1.0), batch {IDS_PER_BATCH}x{IMAGES_PER_ID}, {cores()} cores, "
        f"torch {torch.__version__}"
    )
    for size in args.sizes:
        command = [sys.executable, __file__, "--one", size, "--steps", str(args.steps), "--warmup", str(args.warmup)]
        if args.device:
            command += ["--device", args.device]
        figures = json.loads(
            subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1]
        )
        print(
            f"{figures['size']:>8} on {figures['device']}: {figures['images_per_second']:7.1f} img/s "
            f"({figures['seconds_per_step']:.2f} s/step over {figures['steps']} steps), "
            f"peak {figures['peak_gib']:.2f} GiB ({figures['peak_of']})"
        )


if __name__ == "__main__":
    main()

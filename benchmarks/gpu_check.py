"""The device check: one command a GPU machine runs in under 8 minutes, writing
``<out>/gpu_check.json`` and ``<out>/gpu_check.md``.

1. the tests marked `cuda` (tests/test_precision.py) on the device;
2. training 212 at full width, 384×192, on a synthetic set with PRCC's training identities:
   images/s in fp32 (contiguous) and in bf16 + channels_last, and the share of step time spent
   waiting for input;
3. a CAL-style input pipeline (PIL decoding + torchvision transforms per image in a DataLoader
   with the machine's cores as workers, benchmarks/input_pipeline.py) feeding the same model on
   the same device, side by side, as a ratio;
4. evaluation at Market-1501 scale (3,368 × 15,913) on the device and on the CPU: the same
   numbers, and both times;
5. extraction images/s (fp32 and bf16);
6. augmentation: ccreid's CAL steps against Kornia's equivalent chain on the device, per batch
   (benchmarks/augment_kornia.py);
7. with two GPUs or more: `torchrun --nproc_per_node 2` training images/s.

Goals it reports against (docs/scaling.md): ≥ 1,000 img/s training on an H100/H200-class GPU
(≈ 560 on an A100: NVIDIA's ResNet-50 AMP ≈ 2,470 img/s at 224² scaled by 4.1/18.2 GFLOPs for
384×192 with last stride 1), ≥ 3× the CAL-style fp32 pipeline, input wait < 5 %.

    python benchmarks/gpu_check.py [--device cuda] [--out gpu_check]
    python benchmarks/gpu_check.py --device cpu --quick     # a dry run of every section on a CPU
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from augment_kornia import compare as compare_augmentation
from ccreid.core.schema import RunConfig
from ccreid.data.images import read_rows
from ccreid.data.loader import Prefetcher
from ccreid.engine.trainer import Trainer
from ccreid.evaluation.embedding import embed
from ccreid.evaluation.metrics import rank_metrics
from common import REPO, cores, run_config, synthetic_set
from eval_speed import SIZES, distinct_random_distances, labels
from input_pipeline import JPEGDataset

GOALS = {"train_images_per_second": 1000, "speedup_vs_cal": 3.0, "input_wait_share": 0.05}
FULL = {"size": (384, 192), "width": 1.0, "train_ids": 150, "images_per_camera": 8, "warmup": 5, "steps": 30}
QUICK = {"size": (128, 64), "width": 0.125, "train_ids": 16, "images_per_camera": 4, "warmup": 1, "steps": 3}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_config(scale: dict, amp: str, memory_format: str) -> RunConfig:
    return run_config(
        "212",
        "gpu_check",
        scale["size"],
        {
            "model": {"width": scale["width"], "pretrained": "none"},
            "train": {"ids_per_batch": 8, "images_per_id": 8, "amp": amp, "memory_format": memory_format},
        },
    )


def batches_for(trainer: Trainer, count: int) -> list[np.ndarray]:
    batches, epoch = [], 0
    while len(batches) < count:
        batches += trainer.sampler.epoch(epoch)
        epoch += 1
    return batches[:count]


def timed_training(trainer: Trainer, batches: list[np.ndarray], loader, warmup: int, device) -> dict:
    """Images/s over the batches after `warmup`, and the share of that time spent waiting for input."""
    epoch = trainer.cfg.loss.clothes.start_epoch  # every loss of the loop on
    trainer.set_lr(epoch)
    trainer.network.train()
    waited, started = 0.0, None
    iterator = iter(loader)
    for number, rows in enumerate(batches):
        if number == warmup:
            sync(device)
            started, waited = time.perf_counter(), 0.0
        before = time.perf_counter()
        images = next(iterator)
        waited += time.perf_counter() - before
        trainer.step(rows, images, epoch)
        sync(device)  # the wait above must not hide the previous step's queued work
    seconds = time.perf_counter() - started
    timed = len(batches) - warmup
    return {"images_per_second": timed * len(batches[0]) / seconds, "input_wait_share": waited / seconds}


def training(data, scale: dict, device: torch.device) -> dict:
    results = {}
    for name, amp, memory_format in (("fp32", "off", "contiguous"), ("bf16_channels_last", "bf16", "channels_last")):
        trainer = Trainer(data, train_config(scale, amp, memory_format), device)
        batches = batches_for(trainer, scale["warmup"] + scale["steps"])
        with Prefetcher(trainer.images, batches, pin_memory=device.type == "cuda") as loader:
            results[name] = timed_training(trainer, batches, loader, scale["warmup"], device)
        trainer.close()
    return results


def cal_style_training(data, scale: dict, device: torch.device, workers: int) -> dict:
    """The same model and step, fed by PIL + torchvision per image in DataLoader workers; the
    batches arrive augmented and normalised, so the step's own augmentation passes them on."""
    trainer = Trainer(data, train_config(scale, "off", "contiguous"), device)
    trainer.augment = lambda images, out=None, shard=0, shards=1: images
    batches = batches_for(trainer, scale["warmup"] + scale["steps"])
    train_rows = data.samples.index[data.samples["split"] == "train"].to_numpy()
    root = Path(data.images_path).parent.parent / "raw"
    paths = [root / p for p in data.samples.loc[train_rows, "path"]]
    loader = torch.utils.data.DataLoader(
        JPEGDataset(paths, size=scale["size"]),
        batch_sampler=[b.tolist() for b in batches],
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )
    result = timed_training(trainer, batches, (images.to(device, non_blocking=True) for images in loader), 1, device)
    trainer.close()
    return result | {"workers": workers}


def evaluation(device: torch.device, quick: bool) -> dict:
    size = SIZES["prcc" if quick else "market"]
    rng = np.random.default_rng(0)
    dist = distinct_random_distances(size.queries, size.gallery, rng, torch.device("cpu"))
    args = labels(size, rng) + (size.mode,)
    row = {"size": size.name}
    outputs = {}
    for where in dict.fromkeys([device, torch.device("cpu")]):
        on = dist.to(where)
        rank_metrics(on[:8], *(a[:8] if i in (0, 2, 4) else a for i, a in enumerate(args)))  # warm-up
        sync(where)
        started = time.perf_counter()
        outputs[where.type] = rank_metrics(on, *args)
        sync(where)
        row[f"{where.type}_seconds"] = time.perf_counter() - started
    cpu, dev = outputs["cpu"], outputs[device.type]
    row["same_numbers"] = all(
        np.allclose(np.asarray(torch.as_tensor(cpu[k]).cpu()), np.asarray(torch.as_tensor(dev[k]).cpu()), atol=1e-6)
        for k in cpu
    )
    return row


def extraction(data, scale: dict, device: torch.device) -> dict:
    trainer = Trainer(data, train_config(scale, "off", "contiguous"), device)
    model = trainer.model.eval()
    rows = data.samples.index[data.samples["split"] != "train"].to_numpy()
    images = read_rows(data.images_path, rows)
    results = {}
    for amp, memory_format in (("off", "contiguous"), ("bf16", "channels_last")):
        eval_cfg = trainer.cfg.changed(
            {"eval": {"amp": amp, "memory_format": memory_format, "flip": True, "batch_size": 128}}
        ).eval
        embed(model, images[:8], eval_cfg, device)  # warm-up
        sync(device)
        started = time.perf_counter()
        embed(model, images, eval_cfg, device)
        sync(device)
        results[amp] = {"images_per_second": len(images) / (time.perf_counter() - started), "images": len(images)}
    trainer.close()
    return results


def tests(device: torch.device) -> dict:
    started = time.perf_counter()
    env = os.environ | {"CCREID_TEST_DEVICE": str(device)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", "tests"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    summary = (done.stdout.strip().splitlines() or [""])[-1]
    return {"returncode": done.returncode, "summary": summary, "seconds": time.perf_counter() - started}


def two_gpu_training(quick: bool) -> dict:
    """`torchrun --nproc_per_node 2` on the synthetic set of a throwaway project; images/s from
    the training log's epoch lines."""
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        subprocess.run(["cp", "-r", str(REPO / "params.yaml"), str(REPO / "workflow"), str(project)], check=True)
        common = ["--dataset", "synthetic", "--exp", "212"]
        subprocess.run(["ccreid", "synth", "--dataset", "synthetic"], cwd=project, check=True, capture_output=True)
        subprocess.run(["ccreid", "prepare", "--dataset", "synthetic"], cwd=project, check=True, capture_output=True)
        done = subprocess.run(
            ["torchrun", "--nproc_per_node", "2", "-m", "ccreid", "train", *common],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=300 if quick else 600,
        )
    rates = [float(m) for m in re.findall(r"\((\d+) img/s\)", done.stderr)]
    return {"returncode": done.returncode, "images_per_second": max(rates) if rates else None}


def markdown(report: dict) -> str:
    t, c, e, x = report["training"], report["cal_style"], report["evaluation"], report["extraction"]
    a = report["augmentation"]
    goal = GOALS
    fast = t["bf16_channels_last"]
    lines = [
        f"# Device check: {report['device_name']}",
        "",
        f"- Command: `{report['command']}`; torch {report['torch']}; {report['cores']} CPU cores; "
        f"scale: {report['scale']}",
        f"- Tests marked cuda on {report['device']}: {report['tests']['summary']} "
        f"(exit {report['tests']['returncode']})",
        "",
        "| measure | value | goal |",
        "|---|---|---|",
        f"| training fp32, img/s | {t['fp32']['images_per_second']:.0f} | |",
        f"| training bf16 + channels_last, img/s | {fast['images_per_second']:.0f} | "
        f"≥ {goal['train_images_per_second']} (H100/H200 class, full scale) |",
        f"| input wait, bf16 + channels_last | {100 * fast['input_wait_share']:.1f} % | "
        f"< {100 * goal['input_wait_share']:.0f} % |",
        f"| CAL-style pipeline fp32, img/s ({c['workers']} workers) | {c['images_per_second']:.0f} | |",
        f"| ccreid bf16 / CAL-style fp32 | {fast['images_per_second'] / c['images_per_second']:.2f}× | "
        f"≥ {goal['speedup_vs_cal']:.0f}× |",
        f"| ccreid fp32 / CAL-style fp32 | {t['fp32']['images_per_second'] / c['images_per_second']:.2f}× | |",
        f"| evaluation {e['size']}: device / CPU seconds | {e.get(report['device'].split(':')[0] + '_seconds', 0):.2f}"
        f" / {e['cpu_seconds']:.2f} (same numbers: {e['same_numbers']}) | |",
        f"| extraction fp32 / bf16, img/s | {x['off']['images_per_second']:.0f} / {x['bf16']['images_per_second']:.0f} | |",
        f"| augmentation of a {a['batch']}-image batch: ccreid / Kornia's chain, ms | {1e3 * a['ccreid']:.1f} / "
        f"{1e3 * a['kornia']:.1f} (Kornia {a['kornia_over_ccreid']:.2f}× ccreid's time) | |",
    ]
    if report.get("two_gpus"):
        lines.append(f"| torchrun 2 GPUs, img/s | {report['two_gpus']['images_per_second']} | |")
    else:
        lines.append("| torchrun 2 GPUs | not run: fewer than 2 GPUs | |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="small model and images: a dry run of every section")
    parser.add_argument("--out", default="gpu_check", help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument("--skip-tests", action="store_true", help="leave out section 1 (the tests marked cuda)")
    args = parser.parse_args()
    device = torch.device(args.device)
    scale = QUICK if args.quick else FULL
    torch.use_deterministic_algorithms(True, warn_only=True)  # as `ccreid train`
    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU",
        "torch": torch.__version__,
        "cores": cores(),
        "scale": scale,
        "tests": tests(device) if not args.skip_tests else {"returncode": None, "summary": "not run (--skip-tests)"},
    }
    with tempfile.TemporaryDirectory() as tmp:
        height, width = scale["size"]
        data = synthetic_set(
            Path(tmp), height, width, train_ids=scale["train_ids"], images_per_camera=scale["images_per_camera"]
        )
        report["training"] = training(data, scale, device)
        report["cal_style"] = cal_style_training(data, scale, device, workers=cores())
        report["extraction"] = extraction(data, scale, device)
    report["evaluation"] = evaluation(device, args.quick)
    report["augmentation"] = compare_augmentation(
        device, batch=8 if args.quick else 64, repeats=3 if args.quick else 30
    )
    report["two_gpus"] = (
        two_gpu_training(args.quick) if device.type == "cuda" and torch.cuda.device_count() > 1 else None
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "gpu_check.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()

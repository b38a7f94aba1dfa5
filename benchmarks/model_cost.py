"""Cost of every registry entry at full width: parameters, forward FLOPs, CPU forward time.

For each experiment of params.yaml, the network its resolved recipe builds (`Params.resolve`,
i.e. without any data set's overrides: the real ResNet-50 recipe, `pretrained: none`), at
384×192 (PRCC's and LTCC's size), with PRCC's training classes (150 identities, 300 outfits)
for the classifier sizes:

- parameters: everything the main optimizer trains (backbone, multi-scale module, BN neck,
  correction module, identity classifier, auxiliary head), then the total with the clothes
  classifier (CAL's cosine classifier, trained by its own optimizer, not used at test time);
- forward FLOPs for one image in evaluation mode (what extraction runs), counted by
  `torch.utils.flop_counter.FlopCounterMode`: convolutions and matrix products only (norms,
  activations and poolings are not counted), one multiply-add = 2 FLOPs; GMACs = GFLOPs / 2;
- CPU forward time in evaluation mode (batch --batch, float32), as a ratio to the baseline 212:
  the two models run alternately in the same process, --repeats times each after one warm-up
  call, and the medians are compared, so a change of machine load hits both alike. The time is
  the process's CPU time (`time.process_time`), not the wall clock: on a shared machine the
  wall clock also counts the time spent waiting for a core, which swings with other jobs. With
  one torch thread (the default) that is the forward's own compute; with more threads it also
  counts OpenMP's spin-waiting, so compare ratios at one thread count. The 212 row compares the
  baseline with a second copy of itself: its distance from 1.00 is the noise.

Entries whose networks are identical (210 = 209, 218 = 216 evaluate another entry's model;
206 trains 197's network on PRCC; 213, 208 and 216 build the same modules) are built and timed
once; the table names the entry measured.

    nice python benchmarks/model_cost.py [--size 384x192] [--batch 1] [--repeats 3]
        [--threads 1] [--exps 212 213 ...] [--write]

--write replaces the body of the section "## Cost of each registry entry" of docs/ablations.md
with the table, the command and the date.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import statistics
import sys
import textwrap
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from ccreid.core.config import load_params
from ccreid.core.registry import Registry
from ccreid.core.schema import RecipeCfg
from ccreid.core.sections import canonical_json
from ccreid.models.reid import build_model
from common import REPO, cores

DOC = REPO / "docs" / "ablations.md"
SECTION = "## Cost of each registry entry"
BASELINE = load_params(REPO / "params.yaml").default.baseline  # the report's reference (212)
PRCC_IDS, PRCC_CLOTHES = 150, 300  # PRCC's training split: 150 identities, 2 outfits each


def network_key(recipe: RecipeCfg) -> str:
    """What decides the network's modules and shapes (not its training or evaluation)."""
    loss = recipe.loss
    return canonical_json(
        {
            "model": recipe.model.model_dump(mode="json", exclude={"pretrained"}),
            "aux_head": loss.aux.enabled or loss.distill.enabled,
            "clothes": loss.clothes.enabled,
        }
    )


def describe(recipe: RecipeCfg) -> str:
    """A short name of the network, from the recipe itself."""
    model, loss = recipe.model, recipe.loss
    parts = [{"resnet50": "R50", "resnet50_ibn_a": "R50-IBN-a"}.get(model.backbone_name, model.backbone_name)]
    if model.width != 1.0:
        parts.append(f"width {model.width}")
    if model.multiscale.enabled:
        parts.append(f"MS `{model.multiscale.gate}`")
    if model.correction:
        parts.append("corr")
    if loss.aux.enabled or loss.distill.enabled:
        parts.append("aux head")
    if model.pooling != "maxavg":
        parts.append(f"{model.pooling} pool")
    return " + ".join(parts)


def build(recipe: RecipeCfg, members: Registry, experiment: str) -> torch.nn.Module:
    torch.manual_seed(0)
    untrained = recipe.model.model_copy(update={"pretrained": "none"})
    model = build_model(untrained, recipe.loss, PRCC_IDS, PRCC_CLOTHES, members, experiment)
    return model.eval()


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(parameters without the clothes classifier, all parameters)."""
    total = sum(p.numel() for p in model.parameters())
    clothes = sum(p.numel() for p in model.clothes_classifier.parameters()) if model.clothes_classifier else 0
    return total - clothes, total


def forward_flops(model: torch.nn.Module, height: int, width: int) -> int:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, 3, height, width))
    return counter.get_total_flops()


def timed(model: torch.nn.Module, images: torch.Tensor) -> float:
    """CPU seconds of one forward (the process's, all threads)."""
    start = time.process_time()
    model(images)
    return time.process_time() - start


def side_by_side(model, baseline, images, repeats: int) -> tuple[float, float]:
    """Median forward CPU seconds of (model, baseline), run alternately (order swapped each repeat)."""
    with torch.inference_mode():
        model(images), baseline(images)  # warm-up
        mine, base = [], []
        for repeat in range(repeats):
            if repeat % 2:
                base.append(timed(baseline, images))
                mine.append(timed(model, images))
            else:
                mine.append(timed(model, images))
                base.append(timed(baseline, images))
    return statistics.median(mine), statistics.median(base)


def measure(exps: list[str], height: int, width: int, batch: int, repeats: int) -> list[dict]:
    params = load_params(REPO / "params.yaml")
    recipes = {exp: params.resolve(exp) for exp in exps}
    baseline = build(params.resolve(BASELINE), params.members, BASELINE)
    images = torch.randn(batch, 3, height, width)
    measured: dict[str, dict] = {}  # network key -> figures of its first entry
    rows = []
    for exp in exps:
        key = network_key(recipes[exp])
        if key not in measured:
            model = build(recipes[exp], params.members, exp)
            without_clothes, total = count_parameters(model)
            flops = forward_flops(model, height, width)
            seconds, base_seconds = side_by_side(model, baseline, images, repeats)
            measured[key] = {
                "measured": exp,
                "params": without_clothes,
                "params_total": total,
                "flops": flops,
                "seconds": seconds,
                "base_seconds": base_seconds,
            }
            del model
            print(
                f"  {exp}: {seconds * 1e3:.0f} ms vs {base_seconds * 1e3:.0f} ms ({BASELINE})",
                file=sys.stderr,
                flush=True,
            )
        rows.append({"exp": exp, "network": describe(recipes[exp]), **measured[key]})
    return rows


def table(rows: list[dict], batch: int) -> str:
    base = next((row for row in rows if row["exp"] == BASELINE), None)
    lines = [
        f"| id | network | params (M) | + clothes clf (M) | GFLOPs | GMACs | CPU ms / batch of {batch}: entry, {BASELINE} "
        f"| time vs {BASELINE} | measured as |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        params_delta = ""
        if base is not None and row["exp"] != BASELINE:
            params_delta = f" ({(row['params'] - base['params']) / 1e6:+.1f})"
        lines.append(
            f"| {row['exp']} | {row['network']} | {row['params'] / 1e6:.2f}{params_delta} | "
            f"{row['params_total'] / 1e6:.2f} | {row['flops'] / 1e9:.2f} | {row['flops'] / 2e9:.2f} | "
            f"{row['seconds'] * 1e3:.0f}, {row['base_seconds'] * 1e3:.0f} | {row['seconds'] / row['base_seconds']:.2f}× | "
            f"{row['measured'] if row['measured'] != row['exp'] else ''} |"
        )
    return "\n".join(lines)


def section_body(text_table: str, args, command: str) -> str:
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    notes = [
        f"Full width (`Params.resolve`, no data set's overrides), `pretrained: none`, input "
        f"{args.height}×{args.width}, classifier sizes of PRCC's training split ({PRCC_IDS} identities, "
        f"{PRCC_CLOTHES} outfits). **params**: what the main optimizer trains (backbone, multi-scale "
        "module, BN neck, correction module, identity classifier, auxiliary head), in brackets the "
        f"difference from {BASELINE}; **+ clothes clf**: the total with the clothes classifier (own optimizer, "
        "unused at test time). **GFLOPs**: one image's evaluation-mode forward, convolutions and matrix "
        "products counted by `torch.utils.flop_counter.FlopCounterMode` with one multiply-add = 2 FLOPs "
        '(GMACs = GFLOPs / 2, the unit papers usually call "FLOPs"); the auxiliary head does not run '
        "at test time.",
        f"**time vs {BASELINE}**: median CPU time (`time.process_time`; the wall clock also counts waiting for "
        f"a core on a shared machine) of an evaluation-mode forward (float32, batch {args.batch}, "
        f"{args.repeats} repeats after a warm-up, torch threads: {torch.get_num_threads()}), each network "
        f"run alternately with a baseline in the same process; **CPU ms** gives both medians. The {BASELINE} "
        "row is the baseline against a copy of itself (the noise). Entries with identical networks "
        f"are measured once (**measured as**). {platform.machine()} CPU, {cores()} cores shared with "
        f"other jobs (load average {load} at the end). What the figures say: "
        "[benchmarks/README.md](../benchmarks/README.md#model-cost).",
    ]
    paragraphs = "\n\n".join(textwrap.fill(note, width=98, break_on_hyphens=False) for note in notes)
    return f"""
Generated by `benchmarks/model_cost.py` on {datetime.date.today().isoformat()}:

```bash
{command}
```

{paragraphs}

{text_table}
"""


def write_section(body: str) -> None:
    text = DOC.read_text()
    match = re.search(rf"^{re.escape(SECTION)}[ \t]*\n", text, flags=re.MULTILINE)
    if match is None:
        raise SystemExit(f"{DOC}: no section {SECTION!r}")
    following = re.search(r"^## ", text[match.end() :], flags=re.MULTILINE)
    end = match.end() + following.start() if following else len(text)
    tail = text[end:]
    DOC.write_text(text[: match.end()] + body.rstrip("\n") + "\n" + ("\n" + tail if tail else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="384x192", help="HxW")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1: CPU time is then the forward's own compute)"
    )
    parser.add_argument("--exps", nargs="+", help="experiment ids (default: the whole registry)")
    parser.add_argument("--write", action="store_true", help=f"write the table into {DOC.relative_to(REPO)}")
    args = parser.parse_args()
    args.height, args.width = (int(v) for v in args.size.lower().split("x"))
    torch.set_num_threads(args.threads)
    exps = args.exps or load_params(REPO / "params.yaml").experiments
    # The baseline first (against a copy of itself: the noise floor of the ratios), then by id.
    exps = [BASELINE, *sorted((exp for exp in exps if exp != BASELINE), key=lambda e: (len(e), e))]
    rows = measure(exps, args.height, args.width, args.batch, args.repeats)
    text_table = table(rows, args.batch)
    print(text_table)
    if args.write:
        command = "nice python benchmarks/model_cost.py " + " ".join(sys.argv[1:])
        write_section(section_body(text_table, args, command.strip()))
        print(f"written to {DOC.relative_to(REPO)}", file=sys.stderr)


if __name__ == "__main__":
    main()

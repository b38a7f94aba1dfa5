"""Ranked lists, what re-id researchers look at first (docs/report.md): a fixed, seeded sample of
queries, each with its top gallery images framed green (same identity) or red, and the rank of
its first true match; one PNG per multi-shot protocol (cc first), one run or two side by side
(an experiment and its base, on the same queries).

The list is the one evaluation scores, through the same scorer (ccreid.evaluation.scoring): the
protocol's cameras, its distances (re-ranked when evaluation re-ranks), its junk (same identity
but same camera, or, for cc/sc, the wrong clothes) left out, ties broken against the true match,
and the rank shown is the first-match rank per_query.csv holds.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from PIL import Image

from ccreid.core.errors import CCReIDError
from ccreid.core.schema import EvalCfg
from ccreid.data.images import read_rows
from ccreid.data.layouts.base import Protocol
from ccreid.evaluation.metrics import query_ranks
from ccreid.evaluation.scoring import good_and_junk, on_device, protocol_distances, restrict

TOP = 10
QUERIES = 8
SEED = 0
CELL_HEIGHT = 128  # pixels per image in the PNG, whatever the prepared size
GAP = 12
BLOCK_GAP = 48
TEXT_ROW = 26
DPI = 100
GREEN, RED, QUERY_FRAME, WHITE = (0, 170, 0), (220, 0, 0), (60, 60, 60), (255, 255, 255)


@dataclass(frozen=True)
class Run:
    """One experiment's features (features.h5 as read_features returns it) and evaluation config."""

    name: str
    splits: dict[str, dict]
    protocols: list[Protocol]
    eval_cfg: EvalCfg


@dataclass(frozen=True)
class RankedQuery:
    index: int  # row of the query split (after the protocol's camera filter)
    gallery: np.ndarray  # top gallery rows, nearest first
    good: np.ndarray  # whether each is a true match
    first_rank: int  # 0-based rank of the first true match among the valid items


def multi_shot(protocols: list[Protocol]) -> list[Protocol]:
    """The protocols a ranked list is drawn for: multi-shot ones, cc first."""
    chosen = [p for p in protocols if not p.single_shot]
    return sorted(chosen, key=lambda p: p.name != "cc")


def sample_queries(query: dict, gallery: dict, mode: str, count: int, seed: int) -> np.ndarray:
    """`count` queries that have a true match, drawn with `seed`, in split order: the same
    queries for every experiment on the same prepared data."""
    good, _ = good_and_junk(query, gallery, mode, np.arange(len(query["pids"])))
    answered = np.flatnonzero(good.any(axis=1))
    if not len(answered):
        raise CCReIDError("no query has a true match in the gallery: nothing to draw")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(answered, size=min(count, len(answered)), replace=False))


def rank_queries(run: Run, protocol: Protocol, rows: np.ndarray, top: int = TOP) -> list[RankedQuery]:
    query, gallery = restrict(run.splits[protocol.query], protocol), restrict(run.splits[protocol.gallery], protocol)
    q, g = on_device(query, "cpu"), on_device(gallery, "cpu")
    picked = torch.as_tensor(rows)
    dist = protocol_distances(q["feats"], g["feats"], run.eval_cfg, picked)
    _, first, _, _ = query_ranks(
        dist,
        q["pids"][picked],
        g["pids"],
        q["camids"][picked],
        g["camids"],
        q["clothes"][picked],
        g["clothes"],
        mode=protocol.mode,
    )
    good, junk = good_and_junk(query, gallery, protocol.mode, rows)
    dist_np = dist.double().numpy()
    ranked = []
    for i, row in enumerate(rows):
        valid = np.flatnonzero(~junk[i])
        # Nearest first; on equal distance the negative first, as the metrics rank it.
        order = valid[np.lexsort((good[i, valid], dist_np[i, valid]))][:top]
        ranked.append(RankedQuery(int(row), order, good[i, order], int(first[i])))
    return ranked


def _cell(image: np.ndarray, frame: tuple[int, int, int], height: int) -> np.ndarray:
    """A CHW uint8 image resized to `height` rows (aspect kept) inside a coloured frame."""
    hwc = np.ascontiguousarray(np.asarray(image).transpose(1, 2, 0))
    width = max(1, round(hwc.shape[1] * height / hwc.shape[0]))
    # Enlarged pixel by pixel (small PNGs, no made-up detail), reduced with an area filter.
    method = Image.Resampling.NEAREST if height >= hwc.shape[0] else Image.Resampling.BOX
    resized = np.asarray(Image.fromarray(hwc).resize((width, height), method))
    border = max(3, height // 24)
    out = np.empty((height + 2 * border, width + 2 * border, 3), dtype=np.uint8)
    out[:] = frame
    out[border:-border, border:-border] = resized
    return out


def _image_rows(samples: pd.DataFrame, split: str, paths) -> np.ndarray:
    """Rows of images.h5 of the split's images with these paths (features.h5 names them)."""
    index = samples.index[samples["split"] == split]
    by_path = pd.Series(index, index=samples.loc[index, "path"].to_numpy())
    missing = [path for path in paths if path not in by_path.index]
    if missing:
        raise CCReIDError(
            f"features name image(s) the prepared store lacks (e.g. {missing[0]!r}); "
            "were they extracted from this prepared data set? Re-run `ccreid extract`"
        )
    return by_path.loc[list(paths)].to_numpy(np.int64)


def ranked_list_png(
    dataset: str,
    protocol: Protocol,
    runs: list[Run],
    samples: pd.DataFrame,
    images_path: Path,
    count: int = QUERIES,
    seed: int = SEED,
) -> bytes:
    """One PNG: `count` seeded queries of `protocol`, a block per run (side by side)."""
    query = restrict(runs[0].splits[protocol.query], protocol)
    gallery = restrict(runs[0].splits[protocol.gallery], protocol)
    for run in runs[1:]:
        if list(restrict(run.splits[protocol.query], protocol)["paths"]) != list(query["paths"]):
            raise CCReIDError(f"{runs[0].name} and {run.name} hold different {protocol.name!r} queries")
    rows = sample_queries(query, gallery, protocol.mode, count, seed)
    ranked = [rank_queries(run, protocol, rows) for run in runs]
    # Every run's gallery split holds the same images in the same order (same prepared data).
    q_images = read_rows(images_path, _image_rows(samples, protocol.query, [query["paths"][r] for r in rows]))
    shown = sorted({int(g) for lists in ranked for item in lists for g in item.gallery})
    g_store_rows = _image_rows(samples, protocol.gallery, [gallery["paths"][g] for g in shown])
    g_images = dict(zip(shown, read_rows(images_path, g_store_rows).numpy()))

    sample_cell = _cell(q_images[0].numpy(), QUERY_FRAME, CELL_HEIGHT)
    cell_h, cell_w = sample_cell.shape[:2]
    block_w = (TOP + 1) * cell_w + TOP * 2 + GAP  # the query, a gap, the gallery
    width = len(runs) * block_w + (len(runs) - 1) * BLOCK_GAP
    row_h = TEXT_ROW + cell_h + GAP
    height = TEXT_ROW + len(rows) * row_h
    canvas = np.full((height, width, 3), WHITE, dtype=np.uint8)
    labels = []  # (x, y, text, colour)
    for b, (run, lists) in enumerate(zip(runs, ranked)):
        x0 = b * (block_w + BLOCK_GAP)
        labels.append((x0, TEXT_ROW - 6, f"{run.name}", "black", 13))
        for r, item in enumerate(lists):
            y = TEXT_ROW + r * row_h + TEXT_ROW
            cells = [_cell(q_images[r].numpy(), QUERY_FRAME, CELL_HEIGHT)]
            cells += [
                _cell(g_images[int(g)], GREEN if ok else RED, CELL_HEIGHT) for g, ok in zip(item.gallery, item.good)
            ]
            for c, cell in enumerate(cells):
                x = x0 + c * (cell_w + 2) + (GAP if c else 0)
                canvas[y : y + cell.shape[0], x : x + cell.shape[1]] = cell
            pid = int(query["pids"][item.index])
            text = f"query {item.index} (id {pid}): first true match at rank {item.first_rank + 1}"
            labels.append((x0, y - 5, text, "#006400" if item.first_rank == 0 else "#8b0000", 10))
    figure = Figure(figsize=(width / DPI, height / DPI + 0.45), dpi=DPI)
    axes = figure.add_axes((0, 0, 1, height / (height + 0.45 * DPI)))
    axes.imshow(canvas, interpolation="nearest")
    axes.set_axis_off()
    for x, y, text, colour, size in labels:
        axes.text(x, y, text, color=colour, fontsize=size, va="bottom", ha="left")
    figure.suptitle(
        f"Ranked lists, {protocol.name} protocol ({protocol.mode} junk rules), data set {dataset}: "
        f"top {TOP}, green = same identity, red = other (seed {seed})",
        fontsize=12,
        y=1 - 0.1 / (height / DPI + 0.45),
        va="top",
    )
    return png_bytes(figure)


def png_bytes(figure: Figure) -> bytes:
    """No "Software" entry (it carries the matplotlib version): same figure, same bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()

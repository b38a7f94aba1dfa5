"""Ranking metrics for re-identification: mAP, mINP and CMC, exact and vectorised.

Which gallery items count for a query (design.md §5):
- ``standard``: junk = same pid and same camera; good = same pid, other camera.
- ``cc`` (clothes-changing): good = same pid, other camera, other clothes; junk = same pid and
  (same camera or same clothes).
- ``sc`` (same-clothes): good = same pid, other camera, same clothes; junk = same pid and
  (same camera or other clothes).
Everything else (other pids) is a negative. A query with no good item is skipped and counted.

AP and CMC only need the rank of every good item among the valid (non-junk) items, so no row is
fully sorted: the good distances of a query (a handful) are sorted, every valid negative is
bucketed against them with ``searchsorted`` and the bucket counts give each good item's rank.
Ties between a good item and a negative are broken against the good item (the negative ranks
first), so degenerate features — all distances equal — score as badly as they deserve instead of
scoring by gallery order.
"""

from __future__ import annotations

import numpy as np
import torch

from ccreid.errors import CCReIDError

MODES = ("standard", "cc", "sc")
DEFAULT_CHUNK_ELEMENTS = 1 << 24  # distances handled at once: bounds memory (~64 MB of float32)


def _as_tensor(values, dtype, device) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        return values.to(device=device, dtype=dtype)
    return torch.as_tensor(np.asarray(values), dtype=dtype, device=device)


def _good_and_valid(mode, q_pid, g_pid, q_cam, g_cam, q_clo, g_clo):
    same_pid = q_pid[:, None] == g_pid[None, :]
    other_cam = q_cam[:, None] != g_cam[None, :]
    if mode == "standard":
        good = same_pid & other_cam
    else:
        same_clothes = q_clo[:, None] == g_clo[None, :]
        good = same_pid & other_cam & (~same_clothes if mode == "cc" else same_clothes)
    # Junk is every same-pid item that is not good; negatives (other pids) stay valid.
    valid = good | ~same_pid
    return good, valid


def query_ranks(
    distmat,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    q_clothes=None,
    g_clothes=None,
    mode: str = "standard",
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    device: str | torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-query AP, first-match rank, INP and number of good items (0 = skipped).

    Ranks are 0-based among the query's valid gallery items; AP/INP are NaN for skipped queries.
    """
    if mode not in MODES:
        raise CCReIDError(f"unknown evaluation mode {mode!r}; use one of {', '.join(MODES)}")
    if mode != "standard" and (q_clothes is None or g_clothes is None):
        raise CCReIDError(f"mode {mode!r} needs q_clothes and g_clothes")
    if device is None:
        device = distmat.device if isinstance(distmat, torch.Tensor) else "cpu"
    dist = _as_tensor(distmat, torch.float32, device)
    num_q, num_g = dist.shape
    q_pid, g_pid = _as_tensor(q_pids, torch.int64, device), _as_tensor(g_pids, torch.int64, device)
    q_cam, g_cam = _as_tensor(q_camids, torch.int64, device), _as_tensor(g_camids, torch.int64, device)
    if len(q_pid) != num_q or len(g_pid) != num_g or len(q_cam) != num_q or len(g_cam) != num_g:
        raise CCReIDError(
            f"distmat is {num_q}x{num_g} but got {len(q_pid)} query / {len(g_pid)} gallery labels"
        )
    q_clo = g_clo = None
    if mode != "standard":
        q_clo = _as_tensor(q_clothes, torch.int64, device)
        g_clo = _as_tensor(g_clothes, torch.int64, device)

    ap = torch.full((num_q,), float("nan"), dtype=torch.float64, device=device)
    inp = ap.clone()
    first = torch.full((num_q,), -1, dtype=torch.int64, device=device)
    num_good = torch.zeros(num_q, dtype=torch.int64, device=device)
    step = max(1, chunk_elements // max(num_g, 1))
    for start in range(0, num_q, step):
        rows = slice(start, min(start + step, num_q))
        good, valid = _good_and_valid(
            mode,
            q_pid[rows],
            g_pid,
            q_cam[rows],
            g_cam,
            None if q_clo is None else q_clo[rows],
            g_clo,
        )
        chunk_ap, chunk_first, chunk_inp, chunk_good = _chunk_ranks(dist[rows], good, valid)
        ap[rows], first[rows], inp[rows], num_good[rows] = chunk_ap, chunk_first, chunk_inp, chunk_good
    return ap, first, inp, num_good


def _chunk_ranks(dist: torch.Tensor, good: torch.Tensor, valid: torch.Tensor):
    n, _ = dist.shape
    num_good = good.sum(1)
    k = int(num_good.max()) if n else 0
    if k == 0:
        nan = torch.full((n,), float("nan"), dtype=torch.float64, device=dist.device)
        return nan, torch.full((n,), -1, dtype=torch.int64, device=dist.device), nan.clone(), num_good
    # Sorted good distances per query, padded with +inf (pads sort last and are ignored).
    good_dist = torch.where(good, dist, torch.full_like(dist, float("inf")))
    good_sorted = torch.topk(good_dist, k, dim=1, largest=False, sorted=True).values
    negatives = valid & ~good
    # bucket b of a negative = number of good items strictly closer; it ranks ahead of goods b.. .
    bucket = torch.searchsorted(good_sorted, dist.contiguous(), right=False)
    bucket = torch.where(negatives, bucket, torch.full_like(bucket, k))  # non-negatives: dropped
    offsets = torch.arange(n, device=dist.device)[:, None] * (k + 1)
    counts = torch.bincount((bucket + offsets).flatten(), minlength=n * (k + 1)).view(n, k + 1)
    negatives_ahead = counts[:, :k].cumsum(1)
    position = torch.arange(k, device=dist.device)
    ranks = negatives_ahead + position  # 0-based rank of the i-th closest good item
    is_real = position[None, :] < num_good[:, None]
    precision = (position + 1).double() / (ranks + 1).double()
    ap = (precision * is_real).sum(1) / num_good.clamp(min=1).double()
    last = ranks.gather(1, (num_good - 1).clamp(min=0)[:, None]).squeeze(1)
    inp = num_good.double() / (last + 1).double()
    skipped = num_good == 0
    nan = torch.tensor(float("nan"), dtype=torch.float64, device=dist.device)
    ap = torch.where(skipped, nan, ap)
    inp = torch.where(skipped, nan, inp)
    first = torch.where(skipped, torch.full_like(ranks[:, 0], -1), ranks[:, 0])
    return ap, first, inp, num_good


def summarize(ap: torch.Tensor, first: torch.Tensor, inp: torch.Tensor, max_rank: int = 20) -> dict:
    """Aggregate per-query results (from query_ranks) into mAP, mINP and CMC."""
    answered = ~torch.isnan(ap)
    evaluated = int(answered.sum())
    skipped = int(len(ap) - evaluated)
    if evaluated == 0:
        raise CCReIDError(
            f"no query has a valid gallery match ({skipped} skipped): check the protocol's "
            "query and gallery splits"
        )
    first_ok = first[answered]
    cmc = torch.stack([(first_ok <= r).double().mean() for r in range(max_rank)])
    return {
        "mAP": float(ap[answered].mean()),
        "mINP": float(inp[answered].mean()),
        "cmc": cmc.cpu().numpy(),
        "queries": evaluated,
        "skipped": skipped,
    }


def rank_metrics(
    distmat,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    q_clothes=None,
    g_clothes=None,
    mode: str = "standard",
    max_rank: int = 20,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    device: str | torch.device | None = None,
) -> dict:
    """mAP, mINP, CMC (length max_rank, fractions), evaluated queries and skipped queries.

    ``distmat`` is Q×G (numpy or torch; smaller is closer). Labels are integer arrays.
    ``chunk_elements`` bounds how many distances are processed at once (memory).
    """
    ap, first, inp, _ = query_ranks(
        distmat, q_pids, g_pids, q_camids, g_camids, q_clothes, g_clothes, mode,
        chunk_elements=chunk_elements, device=device,
    )
    return summarize(ap, first, inp, max_rank)

"""Ranking metrics for re-identification: mAP, mINP and CMC, exact and vectorised.

Which gallery items count for a query (docs/datasets.md, "Protocols"):
- ``standard``: junk = same pid and same camera; good = same pid, other camera.
- ``cc`` (clothes-changing): good = same pid, other camera, other clothes; junk = same pid and
  (same camera or same clothes).
- ``sc`` (same-clothes): good = same pid, other camera, same clothes; junk = same pid and
  (same camera or other clothes).
Everything else (other pids) is a negative. A query with no good item is skipped and counted.

AP, INP and CMC only need the rank of every good item among the valid (non-junk) items, and
that rank is: items at or below the good's distance, minus the same-pid items among them (a
handful, found from a pid index of the gallery), plus the goods ahead of it. No row is sorted
and no gallery-wide mask is built. The "items at or below" counts come from one histogram per
row on a uniform grid spanning the query's good distances: the grid is monotone in the
distance, so an item alone in its bin is placed by the bin, and only the few items that share a
bin with a good are compared exactly (``searchsorted``). Ties between a good item and a negative
are broken against the good item (the negative ranks first), so degenerate features — all
distances equal — score as badly as they deserve instead of scoring by gallery order.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch

from ccreid.core.errors import CCReIDError


def distances(query: torch.Tensor, gallery: torch.Tensor, metric: str) -> torch.Tensor:
    """Query × gallery distances of L2-normalised features: `cosine` (1 − cos) or `euclidean`."""
    similarity = query @ gallery.T
    if metric == "cosine":
        return 1.0 - similarity
    squared = (query * query).sum(1, keepdim=True) + (gallery * gallery).sum(1)[None, :] - 2.0 * similarity
    return squared.clamp_min(0.0).sqrt()


MODES = ("standard", "cc", "sc")
# Distances per chunk: on CPU small enough that a chunk's temporaries stay in the core's L2 cache
# (each op then runs from cache instead of memory); on a GPU large enough to fill it.
CPU_CHUNK_ELEMENTS = 1 << 18
GPU_CHUNK_ELEMENTS = 1 << 26
# Workspace per distance of a chunk, at most (float64 distances copied to the device: copy and
# grid 8 + 8, bins 4, flags 1, histogram and its prefix sums 4); float32 in place needs 13.
# For turning a memory budget into ``chunk_elements``.
WORKSPACE_BYTES_PER_ELEMENT = 26
GOOD_SPAN_BINS_PER_ITEM = 0.25  # grid bins per gallery item: ~4 items share a bin


def _as_tensor(values, dtype, device) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        return values.to(device=device, dtype=dtype)
    return torch.as_tensor(np.asarray(values), dtype=dtype, device=device)


def _distance_source(distmat) -> torch.Tensor:
    """The distances as a tensor without copying them; float64 stays float64 (exact ranks)."""
    dist = distmat if isinstance(distmat, torch.Tensor) else torch.as_tensor(np.asarray(distmat))
    if dist.dtype not in (torch.float32, torch.float64):
        dist = dist.float()
    return dist


def _same_pid_items(q_pid: torch.Tensor, g_pid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gallery indices sharing each query's pid (Q×M, M the largest group) and which are real.

    Pads repeat a real index (or 0) so that every index is valid to gather with.
    """
    g_order = torch.argsort(g_pid, stable=True)
    sorted_pids = g_pid[g_order]
    group_start = torch.searchsorted(sorted_pids, q_pid)
    group_size = torch.searchsorted(sorted_pids, q_pid, right=True) - group_start
    offset = torch.arange(int(group_size.max()), device=q_pid.device)
    real = offset < group_size[:, None]
    last = (group_start + group_size - 1).clamp(min=0)[:, None]
    return g_order[torch.minimum(group_start[:, None] + offset, last)], real


def is_good(mode, same_pid_real, q_cam, cand_cam, q_clo, cand_clo) -> torch.Tensor:
    """The protocol's true matches among candidates of each query's identity (the rules above);
    the candidates of the same identity that are not good are junk. Candidates: Q×M, or the
    whole gallery broadcast as 1×G."""
    good = same_pid_real & (cand_cam != q_cam[:, None])
    if mode == "cc":
        good &= cand_clo != q_clo[:, None]
    elif mode == "sc":
        good &= cand_clo == q_clo[:, None]
    return good


def query_ranks(
    distmat,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    q_clothes=None,
    g_clothes=None,
    mode: str = "standard",
    chunk_elements: int | None = None,
    device: str | torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-query AP, first-match rank, INP and number of good items (0 = skipped).

    Ranks are 0-based among the query's valid gallery items; AP/INP are NaN for skipped queries.
    ``chunk_elements`` bounds how many distances are processed at once (workspace about
    ``WORKSPACE_BYTES_PER_ELEMENT`` bytes each); by default cache-sized on CPU, large on GPU.
    """
    with _one_cpu_thread():
        return _query_ranks(
            distmat, q_pids, g_pids, q_camids, g_camids, q_clothes, g_clothes, mode, chunk_elements, device
        )


@contextmanager
def _one_cpu_thread():
    """Torch CPU ops on one thread meanwhile (the setting is restored).

    The evaluation's ops are small (cache-sized chunks, per-query vectors): splitting each over
    threads adds a synchronisation per op, and on a machine busy with other jobs a wait for the
    scheduler each time (measured at Market-1501 size on 2 cores under a load of 3-4: 1-6 s on 2
    threads, 0.25-0.5 s on one). Worker threads over chunks lose the same way, to the GIL.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _query_ranks(distmat, q_pids, g_pids, q_camids, g_camids, q_clothes, g_clothes, mode, chunk_elements, device):
    if mode not in MODES:
        raise CCReIDError(f"unknown evaluation mode {mode!r}; use one of {', '.join(MODES)}")
    if mode != "standard" and (q_clothes is None or g_clothes is None):
        raise CCReIDError(f"mode {mode!r} needs q_clothes and g_clothes")
    source = _distance_source(distmat)
    device = torch.device(device if device is not None else source.device)
    num_q, num_g = source.shape
    q_pid, g_pid = _as_tensor(q_pids, torch.int64, device), _as_tensor(g_pids, torch.int64, device)
    q_cam, g_cam = _as_tensor(q_camids, torch.int64, device), _as_tensor(g_camids, torch.int64, device)
    if len(q_pid) != num_q or len(g_pid) != num_g or len(q_cam) != num_q or len(g_cam) != num_g:
        raise CCReIDError(f"distmat is {num_q}x{num_g} but got {len(q_pid)} query / {len(g_pid)} gallery labels")
    q_clo = g_clo = None
    if mode != "standard":
        q_clo = _as_tensor(q_clothes, torch.int64, device)
        g_clo = _as_tensor(g_clothes, torch.int64, device)

    ap = torch.full((num_q,), float("nan"), dtype=torch.float64, device=device)
    inp = ap.clone()
    first = torch.full((num_q,), -1, dtype=torch.int64, device=device)
    if num_q == 0 or num_g == 0:
        return ap, first, inp, torch.zeros(num_q, dtype=torch.int64, device=device)

    # The same-pid items of every query (a handful each): goods, junk, and their distances.
    same_pid, same_pid_real = _same_pid_items(q_pid, g_pid)
    good = is_good(mode, same_pid_real, q_cam, g_cam[same_pid], q_clo, None if g_clo is None else g_clo[same_pid])
    num_good = good.sum(1)
    k = int(num_good.max())
    if k == 0:
        return ap, first, inp, num_good
    same_pid_dist = source.gather(1, same_pid.to(source.device)).to(device=device)
    inf = torch.tensor(float("inf"), dtype=same_pid_dist.dtype, device=device)
    # Goods sorted by distance, padded by repeating the farthest good: pads are valid indices
    # whose results are masked out, and they leave the goods' range [nearest, farthest] intact.
    by_distance = torch.argsort(torch.where(good, same_pid_dist, inf), dim=1)[:, :k]
    slot = torch.minimum(torch.arange(k, device=device), (num_good - 1).clamp(min=0)[:, None])
    good_order = by_distance.gather(1, slot)
    good_index = same_pid.gather(1, good_order)
    good_dist = same_pid_dist.gather(1, good_order)
    # Same-pid items (good or junk) at or below each good: not negatives, taken off the count.
    same_pid_sorted = torch.where(same_pid_real, same_pid_dist, inf).sort(dim=1).values
    same_pid_at_or_below = torch.searchsorted(same_pid_sorted, good_dist, right=True)

    at_or_below = torch.empty(num_q, k, dtype=torch.int64, device=device)
    _count_in_chunks(source, good_dist, good_index, at_or_below, chunk_elements)

    position = torch.arange(k, device=device)
    ranks = at_or_below - same_pid_at_or_below + position  # 0-based rank of the i-th closest good
    real_good = position < num_good[:, None]
    precision = (position + 1).double() / (ranks + 1).double()
    answered = num_good > 0
    count = num_good.clamp(min=1).double()
    last = ranks.gather(1, (num_good - 1).clamp(min=0)[:, None]).squeeze(1)
    ap = torch.where(answered, (precision * real_good).sum(1) / count, ap)
    inp = torch.where(answered, count / (last + 1).double(), inp)
    first = torch.where(answered, ranks[:, 0], first)
    return ap, first, inp, num_good


def _count_in_chunks(source, good_dist, good_index, at_or_below, chunk_elements: int | None) -> None:
    """Fills ``at_or_below`` chunk by chunk of query rows (``_RankCounter``)."""
    device = at_or_below.device
    num_q, num_g = source.shape
    if chunk_elements is None:
        chunk_elements = GPU_CHUNK_ELEMENTS if device.type == "cuda" else CPU_CHUNK_ELEMENTS
    counter = _RankCounter(num_g, min(chunk_elements, num_q * num_g), good_dist.dtype, device)
    for start in range(0, num_q, counter.rows):
        rows = slice(start, min(start + counter.rows, num_q))
        chunk = source[rows].to(device=device, dtype=good_dist.dtype).contiguous()
        at_or_below[rows] = counter.at_or_below(chunk, good_dist[rows], good_index[rows])


class _RankCounter:
    """Counts, row by row of a distance chunk, the items at or below each of the row's goods.

    A uniform grid over each row's good range [nearest, farthest] in ``num_bins`` bins, plus one
    bin for everything closer and one for everything farther: the grid is monotone in the
    distance (sub, mul, clamp and add are each exactly rounded, on any device), so an item in a
    bin without a good is placed by a prefix sum of the histogram, and only items sharing a bin
    with a good are compared exactly. Row r's bins are numbered from r * width, which gives every
    item a flat bin index in the same pass. The chunk-sized buffers are allocated once and
    reused: fresh large allocations would cost page faults on every chunk.
    """

    def __init__(self, num_g: int, chunk_elements: int, dtype: torch.dtype, device: torch.device):
        self.num_g = num_g
        self.num_bins = max(1, int(num_g * GOOD_SPAN_BINS_PER_ITEM))
        self.width = self.num_bins + 3
        # Flat bin indices are computed in the distances' float type and stored as int32: keep
        # them integers that both represent exactly.
        exact_up_to = min(int(2 / torch.finfo(dtype).eps), 2**31)
        self.rows = max(1, min(chunk_elements // num_g, exact_up_to // self.width))
        # + 1: bin 0 of a row is "closer than its nearest good".
        self.row_start = torch.arange(self.rows, device=device, dtype=dtype)[:, None] * self.width + 1
        self.grid = torch.empty(self.rows, num_g, dtype=dtype, device=device)
        self.bins = torch.empty(self.rows, num_g, dtype=torch.int32, device=device)
        # Padded to whole int64 words (see _true_positions); the pad must read False.
        self.in_shared_bin = torch.zeros(-(-self.rows * num_g // 8) * 8, dtype=torch.bool, device=device)

    def at_or_below(self, dist: torch.Tensor, good_dist: torch.Tensor, good_index: torch.Tensor):
        n, k = good_dist.shape
        num_g, device = self.num_g, dist.device
        nearest, farthest = good_dist[:, :1], good_dist[:, -1:]
        scale = (self.num_bins / (farthest - nearest)).clamp_(max=1e30)  # finite even if the span is 0
        # A finite sum is the cheap proof; only an overflowing sum needs the exact test.
        if not torch.isfinite(dist.sum()) and not torch.isfinite(dist).all():
            raise CCReIDError(
                "the distance matrix contains NaN or infinite values (NaN features from a diverged model?)"
            )
        grid = torch.sub(dist, nearest, out=self.grid[:n]).mul_(scale).clamp_(-1, self.num_bins + 1)
        bins = self.bins[:n].copy_(grid.add_(self.row_start[:n])).view(-1)
        good_bins = bins.view(n, num_g).gather(1, good_index).view(-1).long()
        # Items in bins without a good: counted by the histogram's prefix sums. With the goods'
        # bins emptied, the inclusive sum at a good's bin counts exactly the items in lower bins.
        hist = torch.bincount(bins, minlength=n * self.width).index_fill_(0, good_bins, 0)
        below = hist.view(n, self.width).cumsum(1).view(-1).index_select(0, good_bins).view(n, k)
        # Items sharing a bin with a good: packed per row (+inf pads) and placed exactly among the
        # row's goods by searchsorted.
        shared = torch.zeros(n * self.width, dtype=torch.bool, device=device).index_fill_(0, good_bins, True)
        in_shared_bin = self.in_shared_bin[: -(-n * num_g // 8) * 8]
        torch.index_select(shared, 0, bins, out=in_shared_bin[: n * num_g])
        if n < self.rows:  # a last, shorter chunk: its pad may hold flags of the previous chunk
            in_shared_bin[n * num_g :] = False
        flat = _true_positions(in_shared_bin)
        rows = flat // num_g
        per_row = torch.bincount(rows, minlength=n)
        packed_width = int(per_row.max())
        # The i-th shared item (flat order) of row r goes to packed[r, i - first index of row r].
        row_shift = torch.arange(n, device=device) * packed_width - (per_row.cumsum(0) - per_row)
        packed = torch.full((n, packed_width), float("inf"), dtype=dist.dtype, device=device)
        slots = torch.arange(len(flat), device=device) + row_shift.index_select(0, rows)
        packed.view(-1).index_copy_(0, slots, dist.view(-1).index_select(0, flat))
        goods_closer = torch.searchsorted(good_dist, packed)  # the item is at or below every later good
        hits = torch.zeros(n, k + 1, dtype=torch.int64, device=device)
        hits.scatter_add_(1, goods_closer, torch.ones_like(goods_closer))
        return below + hits.cumsum(1)[:, :k]


def _true_positions(flags: torch.Tensor) -> torch.Tensor:
    """Indices of the True entries of a 1-D bool tensor whose length is a multiple of 8.

    Scanned as int64 words first: when few entries are True this is several times faster than
    ``nonzero`` on the bytes.
    """
    words = flags.view(torch.int64).nonzero().squeeze(1)
    candidates = (words[:, None] * 8 + torch.arange(8, device=flags.device)).view(-1)
    return candidates.masked_select(flags.index_select(0, candidates))


def summarize(ap: torch.Tensor, first: torch.Tensor, inp: torch.Tensor, max_rank: int = 20) -> dict:
    """Aggregate per-query results (from query_ranks) into mAP, mINP and CMC."""
    answered = ~torch.isnan(ap)
    evaluated = int(answered.sum())
    skipped = int(len(ap) - evaluated)
    if evaluated == 0:
        raise CCReIDError(
            f"no query has a valid gallery match ({skipped} skipped): check the protocol's query and gallery splits"
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
    chunk_elements: int | None = None,
    device: str | torch.device | None = None,
) -> dict:
    """mAP, mINP, CMC (length max_rank, fractions), evaluated queries and skipped queries.

    ``distmat`` is Q×G (numpy or torch; smaller is closer). Labels are integer arrays.
    ``chunk_elements`` bounds how many distances are processed at once (memory).
    """
    ap, first, inp, _ = query_ranks(
        distmat,
        q_pids,
        g_pids,
        q_camids,
        g_camids,
        q_clothes,
        g_clothes,
        mode,
        chunk_elements=chunk_elements,
        device=device,
    )
    return summarize(ap, first, inp, max_rank)

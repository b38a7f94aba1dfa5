"""k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification with k-reciprocal
Encoding", CVPR 2017), vectorised in torch.

With all query and gallery features as one set and d(p, g) the squared Euclidean distance
divided by the largest distance from p:
- R(p, k): the k-reciprocal neighbours of p, the g among p's k+1 nearest (p itself included) that
  have p among their own k+1 nearest.
- R*(p, k1): R(p, k1) grown by R(q, round(k1/2)) for every q in R(p, k1) that shares more than
  2/3 of its R(q, round(k1/2)) with R(p, k1).
- V_p: weights exp(-d(p, g)) on R*(p, k1), normalised to sum 1; then (local query expansion)
  replaced by the mean of V over p's k2 nearest neighbours.
- Jaccard distance 1 - sum(min(V_p, V_g)) / sum(max(V_p, V_g)); since each V sums to 1,
  sum(max) = 2 - sum(min).
- Final distance (1 - lambda) * Jaccard + lambda * d.

Memory is O(N^2) for N = queries + gallery (dense N x N distance, weight and mask matrices): fine
for PRCC-sized sets, several GB at Market-1501 size. The Jaccard sums use the sparsity of V (an
inverted index over its non-zero entries, joined with the queries' entries), as in the paper.
"""

from __future__ import annotations

from typing import cast

import torch

EXPANSION_OVERLAP = 2 / 3  # R(q, k1/2) joins R*(p, k1) when it overlaps R(p, k1) by more than this
JOIN_BLOCK_QUERIES = 256  # queries per block of the Jaccard join: bounds its memory


def k_reciprocal_rerank(
    q_feats: torch.Tensor, g_feats: torch.Tensor, k1: int = 20, k2: int = 6, lambda_value: float = 0.3
) -> torch.Tensor:
    """Re-ranked query x gallery distance matrix (smaller is closer), on the features' device."""
    feats = torch.cat([torch.as_tensor(q_feats), torch.as_tensor(g_feats)]).float()
    num_q, n = len(q_feats), len(feats)
    dist = _normalised_squared_distances(feats)
    k1, k2 = min(k1, n - 1), max(1, min(k2, n))
    half = int(round(k1 / 2))  # round half to even, as numpy's around in the authors' code
    neighbours = dist.topk(max(k1 + 1, k2), dim=1, largest=False).indices  # sorted, p itself first

    nearest, half_nearest = neighbours[:, : k1 + 1], neighbours[:, : half + 1]
    expanded = _expand(_reciprocal_neighbours(nearest), nearest, _reciprocal_neighbours(half_nearest), half_nearest)
    weights = torch.where(expanded, torch.exp(-dist), torch.zeros((), device=dist.device))
    weights /= weights.sum(1, keepdim=True)
    if k2 > 1:  # local query expansion: average over the k2 nearest neighbours
        # sum() of k2 >= 2 tensors is a tensor (its int start only types as int | Tensor)
        weights = cast(torch.Tensor, sum(weights.index_select(0, neighbours[:, t]) for t in range(k2))) / k2

    overlap = _min_sums(weights[:num_q], weights[num_q:])  # sum_k min(V_q[k], V_g[k])
    jaccard = 1 - overlap / (2 - overlap)
    return (1 - lambda_value) * jaccard + lambda_value * dist[:num_q, num_q:]


def _normalised_squared_distances(feats: torch.Tensor) -> torch.Tensor:
    squared_norms = (feats * feats).sum(1)
    dist = squared_norms[:, None] + squared_norms[None, :] - 2 * feats @ feats.T
    dist.clamp_(min=0).fill_diagonal_(0)  # exact zeros: rounding must not rank p behind a twin
    return dist / dist.amax(dim=1, keepdim=True).clamp(min=torch.finfo(dist.dtype).tiny)


def _reciprocal_neighbours(nearest: torch.Tensor) -> torch.Tensor:
    """N x N mask of R(p, k) from each item's k+1 nearest (N x (k+1) indices)."""
    n = len(nearest)
    forward = torch.zeros(n, n, dtype=torch.bool, device=nearest.device).scatter_(1, nearest, True)
    return forward & forward.T


def _expand(
    reciprocal: torch.Tensor, nearest: torch.Tensor, half_reciprocal: torch.Tensor, half_nearest: torch.Tensor
) -> torch.Tensor:
    """R*(p, k1) as an N x N mask: R(p, k1) plus each R(q, k1/2), q in R(p, k1), overlapping it enough.

    ``nearest`` / ``half_nearest``: each item's k1+1 / k1/2+1 nearest, which hold R(p, k1) / R(p, k1/2).
    """
    n = len(reciprocal)
    in_set = reciprocal.gather(1, nearest)  # which of p's nearest are in R(p, k1)
    half_in_set = half_reciprocal.gather(1, half_nearest)
    # For each q among p's nearest: the members of R(q, k1/2), kept only when q is in R(p, k1).
    members = half_nearest[nearest]  # N x (k1+1) x (k1/2+1)
    is_member = half_in_set[nearest] & in_set[:, :, None]
    also_in_set = reciprocal.gather(1, members.view(n, -1)).view_as(members)
    accepted = (is_member & also_in_set).sum(2) > EXPANSION_OVERLAP * is_member.sum(2)
    added = is_member & accepted[:, :, None]
    rows = torch.arange(n, device=reciprocal.device)[:, None, None].expand_as(members)
    expanded = reciprocal.clone()
    expanded[rows[added], members[added]] = True
    return expanded


def _min_sums(query_weights: torch.Tensor, gallery_weights: torch.Tensor) -> torch.Tensor:
    """sum_k min(q[k], g[k]) for every query row q and gallery row g, from the non-zeros only."""
    num_q, num_g = len(query_weights), len(gallery_weights)
    # Inverted index: the gallery non-zeros grouped by column k.
    g_rows, g_cols = gallery_weights.nonzero(as_tuple=True)
    by_column = torch.argsort(g_cols, stable=True)
    g_rows, g_cols = g_rows[by_column], g_cols[by_column]
    g_values = gallery_weights[g_rows, g_cols]
    column_size = torch.bincount(g_cols, minlength=gallery_weights.shape[1])
    column_start = column_size.cumsum(0) - column_size
    sums = torch.zeros(num_q, num_g, dtype=query_weights.dtype, device=query_weights.device)
    for start in range(0, num_q, JOIN_BLOCK_QUERIES):
        block = query_weights[start : start + JOIN_BLOCK_QUERIES]
        q_rows, q_cols = block.nonzero(as_tuple=True)
        q_values = block[q_rows, q_cols]
        # Each query non-zero (row, k) meets every gallery non-zero of column k.
        meets = column_size[q_cols]
        entry = torch.repeat_interleave(torch.arange(len(q_cols), device=block.device), meets)
        rank_in_column = torch.arange(len(entry), device=block.device) - (meets.cumsum(0) - meets)[entry]
        partner = column_start[q_cols[entry]] + rank_in_column
        contribution = torch.minimum(q_values[entry], g_values[partner])
        pair = q_rows[entry] * num_g + g_rows[partner]
        sums[start : start + len(block)].view(-1).index_add_(0, pair, contribution)
    return sums

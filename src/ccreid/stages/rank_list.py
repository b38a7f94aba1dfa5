"""Stage `rank-list`: an experiment's ranked lists (ccreid.reporting.ranked_lists), one PNG per
multi-shot protocol, alone or side by side with another experiment's on the same queries."""

from __future__ import annotations

from pathlib import Path

from ccreid.core.atomic import atomic_path
from ccreid.core.paths import ranked_list_name
from ccreid.core.schema import EvalCfg
from ccreid.data.prepared import load_prepared
from ccreid.evaluation.features import read_features
from ccreid.reporting.ranked_lists import QUERIES, SEED, Run, multi_shot, ranked_list_png


def rank_list(
    dataset: str,
    prepared_dir: Path,
    runs: list[tuple[str, Path, EvalCfg]],
    out_dir: Path,
    queries: int = QUERIES,
    seed: int = SEED,
) -> list[Path]:
    """`runs`: (name, features.h5, eval config), the experiment first. Returns the PNGs written
    into `out_dir`."""
    data = load_prepared(Path(prepared_dir))
    loaded = [Run(name, *read_features(Path(features)), eval_cfg) for name, features, eval_cfg in runs]
    against = loaded[1].name if len(loaded) > 1 else None
    written = []
    for protocol in multi_shot(loaded[0].protocols):
        png = ranked_list_png(dataset, protocol, loaded, data.samples, data.images_path, queries, seed)
        target = Path(out_dir) / ranked_list_name(protocol.name, against)
        with atomic_path(target) as tmp:
            tmp.write_bytes(png)
        written.append(target)
    return written

"""Stage `prepare`: a raw data set into data/prepared/<dataset>/ (ccreid.data.prepared), written
whole and atomically; a no-op when its fingerprint (raw data hash, layout, size, code) is fresh."""

from __future__ import annotations

import json
from pathlib import Path

from ccreid.core import fingerprint
from ccreid.core.atomic import atomic_dir, exclusive, require_free_space
from ccreid.core.paths import SUMMARY
from ccreid.core.schema import DatasetCfg, PluginFiles
from ccreid.core.sections import prepare_section
from ccreid.core.stage_code import plugins_registry, prepare_code
from ccreid.data.layouts.validate import format_summary
from ccreid.data.preparation import parse_dataset, write_prepared


def prepare(
    name: str, cfg: DatasetCfg, out_dir: Path, workers: int | None = None, plugins: PluginFiles | None = None
) -> dict:
    """Build ``out_dir`` for data set `name`; returns the summary. No-op when already fresh.
    `plugins`: params.yaml's plugin files (Params.plugins), where the layout may come from."""
    out_dir = Path(out_dir)
    parsed, summary = parse_dataset(name, cfg, plugins_registry(plugins))
    expected = fingerprint.make_fingerprint(
        __name__,
        prepare_code(cfg.layout, plugins),
        prepare_section(cfg),
        {"raw": Path(cfg.root)},
    )
    with exclusive(out_dir):
        if fingerprint.is_fresh(out_dir, expected):
            return json.loads((out_dir / SUMMARY).read_text())
        height, width = cfg.size
        require_free_space(out_dir.parent, len(parsed.samples) * 3 * height * width, f"preparing data set {name!r}")
        with atomic_dir(out_dir) as tmp:
            summary = write_prepared(name, cfg, parsed, summary, tmp, workers)
            fingerprint.record(tmp, expected)
    return summary


def check(name: str, cfg: DatasetCfg, plugins: PluginFiles | None = None) -> str:
    """Parse and validate only (`ccreid prepare --check`): the summary as text, nothing written."""
    return format_summary(parse_dataset(name, cfg, plugins_registry(plugins))[1])


def summary_text(summary: dict) -> str:
    return format_summary(summary)

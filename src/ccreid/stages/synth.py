"""Stage `synth`: the embedded synthetic CC-ReID set (ccreid.data.synthetic) written under its
raw root in PRCC's layout, whole and atomically; a no-op when its fingerprint is fresh."""

from __future__ import annotations

import json
from pathlib import Path

from ccreid.core import fingerprint
from ccreid.core.atomic import atomic_dir, exclusive
from ccreid.core.paths import SYNTH_SUMMARY
from ccreid.core.schema import SynthCfg
from ccreid.core.stage_code import stage_code
from ccreid.data.synthetic import generate, synth_section


def synthesize(root: Path, c: SynthCfg) -> dict:
    """Write the synthetic CC-ReID set under `root` (PRCC layout) and return a summary of counts
    (ccreid.data.synthetic says what each key draws)."""
    root = Path(root)
    if root.is_symlink():  # write where the link points, keep the link
        root = root.resolve()
    expected = fingerprint.make_fingerprint(__name__, stage_code("synth"), synth_section(c), {})
    with exclusive(root):
        if fingerprint.is_fresh(root, expected):  # already written from this cfg and code
            return json.loads((root / SYNTH_SUMMARY).read_text())
        with atomic_dir(root) as tmp:
            rows, counts, splits = generate(tmp, c)
            summary = {
                "images": len(rows),
                "ids": {split: len(pids) for split, pids in splits},
                "images_per_split": counts,
                "palette_size": c.palette_size,
                "size": [c.height, c.width],
            }
            (tmp / SYNTH_SUMMARY).write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
            fingerprint.record(tmp, expected)
        return summary

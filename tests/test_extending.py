"""docs/extending.md's worked examples are run code: each one's file becomes a plugin of a project
built from the repository's params.yaml, its entry is added, and the registry's checks run on it
(tests/test_registry.py), as they would on the lab log's entries."""

from __future__ import annotations

import re

import pytest
import yaml
from PIL import Image

from ccreid.core.config import load_params
from ccreid.core.stage_code import plugins_registry
from helpers import REPO
from test_registry import check_entry

DOC = (REPO / "docs" / "extending.md").read_text()


def examples() -> dict[str, dict[str, str]]:
    """Each "### <title>" of the worked examples: its python and yaml blocks."""
    worked = DOC[DOC.index("## Worked examples") :]
    found = {}
    for section in re.split(r"^### ", worked, flags=re.MULTILINE)[1:]:
        title = section.splitlines()[0].strip()
        blocks = dict(re.findall(r"```(python|yaml)\n(.*?)```", section, flags=re.DOTALL))
        found[title] = blocks
    return found


EXAMPLES = examples()
ENTRIES = ["A gate", "A multi-scale block", "A loss term", "A backbone", "A Kornia augmentation"]


def test_the_page_has_an_example_of_every_extension_point():
    assert list(EXAMPLES) == [*ENTRIES, "A data-set layout"]


def project(tmp_path, example: dict[str, str]):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    if "python" in example:
        (tmp_path / "plugins").mkdir()
        (tmp_path / "plugins" / "example.py").write_text(example["python"])
        raw["plugins"] = ["plugins/example.py"]
    return raw


@pytest.mark.parametrize("title", ENTRIES)
def test_a_worked_example_passes_the_registry_checks(tmp_path, title):
    raw = project(tmp_path, EXAMPLES[title])
    raw["experiments"] |= yaml.safe_load(EXAMPLES[title]["yaml"])
    raw["tables"]["mine"] = ["213", "219"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    check_entry(load_params(tmp_path / "params.yaml"), "219")


def test_the_layout_example_parses_its_tree(tmp_path):
    raw = project(tmp_path, EXAMPLES["A data-set layout"])
    dataset = yaml.safe_load(EXAMPLES["A data-set layout"]["yaml"])
    root = tmp_path / "data" / "raw" / "mylab"
    for folder, names in {
        "train": ["1_1_1_0.jpg", "1_2_2_0.jpg", "2_1_1_0.jpg", "2_2_1_0.jpg"],
        "query": ["3_1_1_0.jpg", "4_1_1_0.jpg"],
        "gallery": ["3_2_2_0.jpg", "3_2_1_1.jpg", "4_2_2_0.jpg"],
    }.items():
        (root / folder).mkdir(parents=True)
        for name in names:
            Image.new("RGB", (8, 16), (90, 120, 150)).save(root / folder / name)
    raw["datasets"] |= {name: {**cfg, "root": str(root)} for name, cfg in dataset.items()}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    params = load_params(tmp_path / "params.yaml")
    registry = plugins_registry(params.plugins)
    parsed = registry.load(registry.member("layout", "mylab"))(root)
    samples = parsed.samples.set_index("path")
    assert len(samples) == 9 and {p.name for p in parsed.protocols} == {"standard", "cc"}
    assert samples.loc["gallery/3_2_2_0.jpg", "clothes"] == "3_2" and samples.loc["query/4_1_1_0.jpg", "camid"] == 1

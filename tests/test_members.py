"""A mistake in a registry member stops at load, or before any job, with one message naming the
member, the experiment and the key (docs/extending.md, "What is checked, and when").

A researcher adds entry 219 = 213 with a gate of their own, in a plugin file; each case below is
one way to get it wrong."""

from __future__ import annotations

import pytest
import yaml

from ccreid.core.config import load_params
from ccreid.core.errors import CCReIDError
from ccreid.engine.trainer import check_training
from helpers import REPO, run, tiny_params, write_project

GATE = """
import torch
from torch import nn

from ccreid.core.registry import gate


@gate("{name}")
class Mine(nn.Module):
    def __init__(self, channels, reduction=16, kernel=3):
        super().__init__()
        {init}
        self.conv = nn.Conv1d(1, 1, kernel, padding=kernel // 2, bias=False)

    def forward(self, x):
        weights = self.conv(x.mean((2, 3)).unsqueeze(1)).squeeze(1).sigmoid()[:, :, None, None]
        return {returns}
"""


def gate_source(name="mine", init="pass", returns="weights * x", head=""):
    return head + GATE.format(name=name, init=init, returns=returns)


def write(tmp_path, source: str | None, gate="mine", raw: dict | None = None) -> dict:
    """A project folder: params.yaml with entry 219 (213 with `gate`) and, when given, the plugin."""
    raw = raw or yaml.safe_load((REPO / "params.yaml").read_text())
    if source is not None:
        (tmp_path / "plugins").mkdir(exist_ok=True)
        (tmp_path / "plugins" / "gates.py").write_text(source)
        raw["plugins"] = ["plugins/gates.py"]
    raw["experiments"]["219"] = {"base": "213", "note": "mine", "model": {"multiscale": {"gate": gate}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return raw


def load_error(tmp_path) -> str:
    with pytest.raises(CCReIDError) as error:
        load_params(tmp_path / "params.yaml")
    return str(error.value)


def build_error(tmp_path) -> str:
    run_cfg = load_params(tmp_path / "params.yaml").run_config("synthetic", "219")
    with pytest.raises(CCReIDError) as error:
        check_training(run_cfg)
    return str(error.value)


# --------------------------------------------------------------- when params.yaml loads
@pytest.mark.parametrize(
    "change, expected",
    [
        (
            {"model": {"multiscale": {"gate": "eca_agv"}}},
            "experiment '219': key 'model.multiscale.gate' = 'eca_agv': no gate of that name; valid gates: "
            "conv7_avgmax, eca_avgmax, linear_avgmax",
        ),
        ({"model": {"backbone": "resnet5O"}}, "key 'model.backbone' = 'resnet5O': no backbone of that name"),
        ({"model": {"pooling": "mean"}}, "key 'model.pooling' = 'mean': no pooling of that name; valid poolings: avg"),
        ({"model": {"multiscale": {"block": "os"}}}, "key 'model.multiscale.block' = 'os': no block of that name"),
        ({"loss": {"centre": {"enabled": True}}}, "key 'loss.centre' = 'centre': no loss of that name"),
        (
            {"augment": {"extra": [{"name": "RandomGreyscale", "p": 0.1}]}},
            "key 'augment.extra[0]' = 'RandomGreyscale': no augmentation of that name; valid augmentations: "
            "(none registered) or any class of kornia.augmentation",
        ),
        (
            {"model": {"multiscale": {"gate": {"name": "se_avg", "kernel": 3}}}},
            "key 'model.multiscale.gate': gate 'se_avg' (",
        ),
        (
            {"augment": {"extra": [{"name": "RandomGrayscale", "probability": 0.1}]}},
            "key 'augment.extra[0]': augmentation 'RandomGrayscale' (",
        ),
        ({"model": {"multiscale": {"gate": {"kernel": 3}}}}, "expected a member name, or a mapping with `name:`"),
    ],
)
def test_a_bad_name_or_argument_stops_when_params_load(tmp_path, change, expected):
    raw = write(tmp_path, None, gate="se_avg")
    raw["experiments"]["219"] |= change
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    assert expected in load_error(tmp_path)


def test_an_argument_the_member_does_not_take_names_what_it_takes(tmp_path):
    raw = write(tmp_path, gate_source(), gate={"name": "mine", "kernal": 5})
    message = load_error(tmp_path)
    assert "experiment '219'" in message and "key 'model.multiscale.gate': gate 'mine' (" in message
    assert "does not accept ['kernal']" in message and "it takes kernel" in message
    assert "after the ones ccreid passes every gate: channels, reduction" in message
    assert raw["plugins"] == ["plugins/gates.py"]


def test_a_layout_name_is_checked_too(tmp_path):
    raw = write(tmp_path, None, gate="se_avg")
    raw["datasets"]["prcc"]["layout"] = "prc"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    assert "key 'datasets.prcc.layout' = 'prc': no layout of that name; valid layouts: celeb" in load_error(tmp_path)


def test_two_members_under_one_name_stop_naming_both_places(tmp_path):
    write(tmp_path, gate_source(name="se_avg"), gate="se_avg")
    message = load_error(tmp_path)
    assert "gate 'se_avg' is registered twice" in message
    assert "models/gates/se_avg.py" in message and "plugins/gates.py:" in message


@pytest.mark.parametrize(
    "plugins, expected",
    [
        (["plugins/nowhere.py"], "plugins: 'plugins/nowhere.py': no such file"),
        (["lab/gates.py"], "plugins: 'lab/gates.py' is not in the folder plugins/ beside params.yaml: move it there"),
        ("plugins/gates.py", "plugins = 'plugins/gates.py': expected a list of Python files"),
    ],
)
def test_a_plugin_that_is_not_there_is_named(tmp_path, plugins, expected):
    raw = write(tmp_path, gate_source(), gate="se_avg")
    raw["plugins"] = plugins
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    assert expected in load_error(tmp_path)


def test_a_plugin_that_is_not_python_is_named_with_its_line(tmp_path):
    write(tmp_path, gate_source(init="pass )"))
    assert "plugins/gates.py:12: not valid Python (unmatched ')')" in load_error(tmp_path)


# --------------------------------------------------------------- when the run is built, before any job
@pytest.mark.parametrize(
    "source, expected",
    [
        (
            gate_source(returns="weights"),
            "on an input of shape (2, 128, 4, 4): expected shape 2x128x4x4, got 2x128x1x1",
        ),
        (
            gate_source(returns="weights.expand_as(x)"),
            "its output is not a per-element product with its input",
        ),
        (
            gate_source(init="assert kernel % 2, 'kernel must be odd'"),
            "its builder refused model.multiscale.gate arguments {'kernel': 4} with channels, reduction given by "
            "ccreid (AssertionError: kernel must be odd)",
        ),
        (gate_source(head="import no_such_package\n"), "its module"),
    ],
    ids=["wrong shape", "ignores its input", "refuses its arguments", "does not import"],
)
def test_a_member_that_breaks_its_contract_stops_before_training(tmp_path, source, expected):
    write(tmp_path, source, gate={"name": "mine", "kernel": 4 if "kernel must be odd" in expected else 5})
    message = build_error(tmp_path)
    assert expected in message
    assert "experiment '219'" in message and "gate 'mine'" in message and "plugins/gates.py" in message


def test_a_loss_term_that_returns_more_than_a_scalar_stops_before_training(tmp_path):
    raw = write(tmp_path, None, gate="se_avg")
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "terms.py").write_text(
        "from ccreid.core.registry import loss\nfrom ccreid.engine.losses.term import LossTerm\n\n\n"
        '@loss("per_sample")\nclass PerSample(LossTerm):\n    def __init__(self, context, weight):\n'
        "        super().__init__()\n\n    def forward(self, step):\n"
        '        return step.outputs["features"].square().sum(1)\n'
    )
    raw["plugins"] = ["plugins/terms.py"]
    raw["experiments"]["219"]["loss"] = {"per_sample": {"enabled": True, "weight": 1.0}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    message = build_error(tmp_path)
    assert "experiment '219': loss term 'per_sample' returned (4,); a loss term returns one scalar" in message


def test_a_block_that_ignores_its_input_stops_before_training(tmp_path):
    raw = write(tmp_path, None, gate="se_avg")
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "blocks.py").write_text(
        "import torch\nfrom torch import nn\n\nfrom ccreid.core.registry import block\n\n\n"
        "class Constant(nn.Module):\n    def forward(self, x):\n        return torch.zeros_like(x)\n\n\n"
        '@block("constant")\ndef constant(channels, gate, blocks):\n    return Constant()\n'
    )
    raw["plugins"] = ["plugins/blocks.py"]
    raw["experiments"]["219"]["model"]["multiscale"]["block"] = "constant"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    message = build_error(tmp_path)
    assert "experiment '219': block 'constant' (" in message
    assert "gives the same output for two different inputs of shape (2, 512, 4, 4): it ignores its input" in message


def tiny_project(tmp_path, source: str, gate) -> tuple:
    params = tiny_params()
    project = write_project(tmp_path / "project", params)
    raw = write(project, source, gate=gate, raw=params)
    raw["tables"]["demo"] = ["212", "219"]
    (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return project


@pytest.mark.slow
def test_the_commands_name_a_misspelt_gate_before_any_work(tmp_path):
    """config show, config diff and Snakemake's plan (before: all three passed it, and only
    `ccreid train` stopped, after synthesis and preparation ran)."""
    project = tiny_project(tmp_path, gate_source(), "eca_agv")
    for command in (
        ["ccreid", "config", "show", "219"],
        ["ccreid", "config", "diff", "213", "219"],
        ["snakemake", "-n", "--cores", "1"],
    ):
        failed = run(command, cwd=project, check=False)
        output = failed.stdout + failed.stderr
        assert failed.returncode != 0, command
        assert "experiment '219': key 'model.multiscale.gate' = 'eca_agv': no gate of that name" in output, output
        assert "Traceback" not in failed.stderr or command[0] == "snakemake"
    assert not (project / "data").exists() and not (project / "results").exists()


@pytest.mark.slow
def test_snakemake_stops_a_broken_member_before_any_job_runs(tmp_path):
    """A gate that returns its weights alone passes every name check; Snakemake's start checks the
    trainings it is about to run (`ccreid check`) and stops before synthesis, preparation or
    training: nothing is written."""
    project = tiny_project(tmp_path, gate_source(returns="weights"), "mine")
    failed = run(["snakemake", "--cores", "1"], cwd=project, check=False)
    output = failed.stdout + failed.stderr
    assert failed.returncode != 0
    assert "experiment '219': gate 'mine' (" in output and "expected shape 2x128x4x4, got 2x128x1x1" in output, output
    assert not (project / "data").exists() and not (project / "results").exists()
    checked = run(["ccreid", "check", "--dataset", "synthetic", "212"], cwd=project)
    assert "1 training(s) of 1 run(s) checked" in checked.stdout

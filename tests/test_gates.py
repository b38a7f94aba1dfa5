"""Our gates against the lab log's own ChannelAttention classes (entries 196-203).

The log is parsed here, not copied: each entry's `class ChannelAttention` source is executed and
compared with the registry gate of the same entry, weights copied across strictly.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from ccreid.core.errors import CCReIDError
from ccreid.core.registry import registry
from helpers import member

LAB_LOG = Path(__file__).resolve().parents[2] / "shared/seed/lab-log.txt"

ENTRY_TO_GATE = {
    196: "se_avg",
    197: "se_avgmax",
    198: "spatial",
    199: "conv7_avgmax",
    200: "eca_avgmax",
    201: "linear_avgmax",
    202: "mlp_bn_avgmax",
    203: "se_bn_avgmax",
}

CHANNELS = 64


def lab_log_gate_sources(text: str) -> dict[int, str]:
    """Entry number -> source of the entry's `class ChannelAttention`.

    An entry starts at a line beginning with its integer id ("196 ...", "200"); the class runs from
    "class ChannelAttention" to the next line starting with a digit (a metric like 0.1897 or the
    next entry).
    """
    sources: dict[int, str] = {}
    entry, code = None, None
    for line in text.splitlines():
        if code is not None:
            if not re.match(r"\d", line):
                code.append(line)
                continue
            sources[entry] = "\n".join(code)
            code = None
        if re.match(r"\d+(\s|$)", line):
            entry = int(line.split()[0])
        elif line.startswith("class ChannelAttention"):
            code = [line]
    return sources


@pytest.fixture(scope="module")
def lab_log_classes() -> dict[int, type]:
    assert LAB_LOG.is_file(), f"lab log not found at {LAB_LOG}: shared/ must sit beside the repository"
    classes = {}
    for entry, source in lab_log_gate_sources(LAB_LOG.read_text(encoding="utf-8")).items():
        namespace = {"torch": torch, "nn": nn}
        exec(textwrap.dedent(source), namespace)
        classes[entry] = namespace["ChannelAttention"]
    return classes


def test_the_registry_holds_every_gate_of_the_lab_log(lab_log_classes):
    """The log's gates are registered; the registry may hold more (the next entry's)."""
    assert sorted(lab_log_classes) == sorted(ENTRY_TO_GATE)
    assert set(ENTRY_TO_GATE.values()) <= set(registry().names("gate"))


@pytest.mark.parametrize("entry", sorted(ENTRY_TO_GATE))
def test_gate_equals_lab_log_class(lab_log_classes, entry):
    torch.manual_seed(entry)
    theirs = lab_log_classes[entry](CHANNELS)
    ours = member("gate", ENTRY_TO_GATE[entry])(CHANNELS, reduction=16)
    assert set(ours.state_dict()) == set(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(4, CHANNELS, 8, 4)
    for training in (False, True):  # train mode also checks BN on batch statistics (202, 203)
        theirs.train(training)
        ours.train(training)
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-6, rtol=0)
    # the same gradients reach the input
    x_ours, x_theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours(x_ours).square().sum().backward()
    theirs(x_theirs).square().sum().backward()
    torch.testing.assert_close(x_ours.grad, x_theirs.grad, atol=1e-5, rtol=1e-5)


def test_unknown_gate_lists_valid_names():
    with pytest.raises(CCReIDError, match="'se_max': no gate of that name; valid gates: .*, se_avg, se_avgmax"):
        registry().member("gate", "se_max")


def test_too_large_reduction_is_a_clear_error():
    with pytest.raises(CCReIDError, match="reduction"):
        member("gate", "se_avg")(8, reduction=16)

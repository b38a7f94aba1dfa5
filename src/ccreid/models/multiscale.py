"""The lab log's multi-scale module (params.yaml `model.multiscale`, "多尺度模块").

The project's reading (docs/ablations.md, `model.multiscale`): OSNet omni-scale residual blocks appended after the
backbone's last stage, at the backbone's width. Each block reduces the channels 4x with a 1x1
conv, runs T = 4 streams of 1..4 stacked lite 3x3 convs (receptive fields 3, 5, 7, 9), rescales
every stream with ONE gate shared by the streams (OSNet's unified aggregation gate; here any
lab-log gate, built at the bottleneck width), sums them, expands back with a 1x1 conv and adds
the input.
"""

from __future__ import annotations

from functools import partial

from torch import nn

from ccreid.core.errors import CCReIDError
from ccreid.models.gates import build_gate
from ccreid.models.osnet import OSBlock, init_osnet_weights


class MultiScaleModule(nn.Sequential):
    """`blocks` omni-scale blocks of width `channels` (input and output), gate `gate`."""

    def __init__(self, channels: int, gate: str = "se_avg", blocks: int = 2, reduction: int = 16):
        if blocks < 1:
            raise CCReIDError(f"model.multiscale.blocks must be at least 1, got {blocks}")
        if channels % 4:
            raise CCReIDError(f"the multi-scale module needs a width divisible by 4, got {channels} channels")
        gate_at_width = partial(build_gate, gate, reduction=reduction)
        super().__init__(*(OSBlock(channels, channels, gate=gate_at_width) for _ in range(blocks)))
        init_osnet_weights(self)

"""Block `osnet`: OSNet's omni-scale residual blocks (docs/ablations.md, `model.multiscale`).

The project's reading of the lab log's multi-scale module: omni-scale residual blocks at the
backbone's width. Each block reduces the channels 4x with a 1x1 conv, runs T = 4 streams of
1..4 stacked lite 3x3 convs (receptive fields 3, 5, 7, 9), rescales every stream with ONE gate
shared by the streams (OSNet's unified aggregation gate; here the configured gate, built at the
bottleneck width), sums them, expands back with a 1x1 conv and adds the input.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ccreid.core.errors import CCReIDError
from ccreid.core.registry import block
from ccreid.models.osnet_layers import OSBlock, init_osnet_weights


@block("osnet")
def osnet_blocks(channels: int, gate: Callable[[int], nn.Module], blocks: int = 2) -> nn.Sequential:
    """`blocks` omni-scale blocks of width `channels` (input and output), with OSNet's initialisation."""
    if channels % 4:
        raise CCReIDError(f"the osnet multi-scale block needs a width divisible by 4, got {channels} channels")
    module = nn.Sequential(*(OSBlock(channels, channels, gate=gate) for _ in range(blocks)))
    init_osnet_weights(module)
    return module

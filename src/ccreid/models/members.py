"""Building the registry members a model is made of — backbone, pooling, multi-scale block and
gate — each checked against its contract on a small fixed input as it is built, before any
training (docs/extending.md, "Contracts"): a member with the wrong output shape, a gate whose
output is not a per-element product with its input, or a module that ignores its input stops
with one error naming the member, the experiment, and the expected and actual shapes.

The probes draw from a generator of their own and run in eval mode without gradients: a model
built with the checks has the same initial weights, buffers and global random state as one built
without them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from ccreid.core.errors import CCReIDError
from ccreid.core.registry import Member, Registry, member_ref
from ccreid.core.schema import ModelCfg, MultiscaleCfg
from ccreid.models.base import Backbone, GlobalPooling
from ccreid.models.pretrained import load_pretrained

PROBE_IMAGES = (2, 3, 64, 32)  # batch, channels, height, width of the backbone's probe
PROBE_MAP = 4  # side of the feature maps the other members are probed with


def _probe(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@contextmanager
def _probing(module: nn.Module) -> Iterator[None]:
    """Eval mode, no gradients, training mode restored: BatchNorm's statistics stay untouched."""
    training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(training)


class ContractError(CCReIDError):
    """A member that breaks its contract, named with its experiment (raised as is through the
    members that build it: a gate inside its block)."""


class Built:
    """One member being built for one experiment: its errors name both."""

    def __init__(self, registry: Registry, kind: str, spec: Any, key: str, experiment: str):
        self.key, self.experiment = key, experiment
        try:
            self.name, self.arguments = member_ref(spec)
            self.member: Member = registry.member(kind, self.name, key)
            registry.check_arguments(self.member, self.arguments, key)
            self.builder = registry.load(self.member)
        except CCReIDError as error:
            raise ContractError(f"experiment {experiment!r}: {error}") from None

    def error(self, text: str) -> ContractError:
        member = self.member
        return ContractError(f"experiment {self.experiment!r}: {member.kind} {member.name!r} ({member.where}): {text}")

    def __call__(self, **contract: Any) -> nn.Module:
        try:
            module = self.builder(**contract, **self.arguments)
        except ContractError:
            raise
        except CCReIDError as error:
            raise self.error(str(error)) from None
        except (TypeError, ValueError, RuntimeError, AssertionError) as error:
            raise self.error(
                f"its builder refused {self.key} arguments {self.arguments or '(none)'} "
                f"with {', '.join(contract)} given by ccreid ({type(error).__name__}: {error})"
            ) from None
        if not isinstance(module, nn.Module):
            raise self.error(f"built a {type(module).__name__}, not a torch.nn.Module")
        return module

    def forward(self, module: nn.Module, *inputs: torch.Tensor, method: str = "forward") -> Any:
        try:
            return getattr(module, method)(*inputs)
        except ContractError:
            raise
        except Exception as error:  # noqa: BLE001 — whatever a member's forward raises on its probe
            shapes = " and ".join(str(tuple(x.shape)) for x in inputs)
            raise self.error(f"its {method} fails on an input of shape {shapes}: {type(error).__name__}: {error}")

    def check_shape(self, what: str, actual: Any, expected: tuple[int | str, ...]) -> None:
        """`expected`: sizes, with "*" for a size of the member's choice."""
        shape = tuple(actual.shape) if isinstance(actual, torch.Tensor) else None
        fits = shape is not None and len(shape) == len(expected)
        fits = fits and all(want == "*" or want == got for want, got in zip(expected, shape or ()))
        if not fits:
            shown = "x".join(str(size) for size in expected)
            got = "x".join(str(size) for size in shape) if shape is not None else type(actual).__name__
            raise self.error(f"{what}: expected shape {shown}, got {got}")

    def check_uses_input(self, module: nn.Module, shape: tuple[int, ...], method: str = "forward") -> None:
        outputs = [self.forward(module, _probe(*shape, seed=seed), method=method) for seed in (1, 2)]
        first, second = (out[-1] if isinstance(out, tuple) else out for out in outputs)
        if torch.equal(first, second):
            raise self.error(f"gives the same output for two different inputs of shape {shape}: it ignores its input")


def build_backbone(model_cfg: ModelCfg, registry: Registry, experiment: str) -> Backbone:
    built = Built(registry, "backbone", model_cfg.backbone, "model.backbone", experiment)
    module = built(last_stride=model_cfg.last_stride, width=model_cfg.width)
    mid, out = (getattr(module, name, None) for name in ("mid_channels", "out_channels"))
    if not (hasattr(module, "forward_features") and isinstance(mid, int) and isinstance(out, int)):
        raise built.error(
            "a backbone needs `forward_features(x) -> (mid_map, final_map)` and integer `mid_channels` and "
            "`out_channels` (ccreid.models.base.Backbone)"
        )
    load_pretrained(module, built.name, model_cfg.pretrained)
    with _probing(module):
        batch = PROBE_IMAGES[0]
        maps = built.forward(module, _probe(*PROBE_IMAGES), method="forward_features")
        if not (isinstance(maps, tuple) and len(maps) == 2):
            raise built.error(f"forward_features must return (mid_map, final_map), got {type(maps).__name__}")
        built.check_shape("its mid map", maps[0], (batch, mid, "*", "*"))
        built.check_shape("its final map", maps[1], (batch, out, "*", "*"))
        built.check_uses_input(module, PROBE_IMAGES, method="forward_features")
    return module  # type: ignore[return-value]  # checked above to offer Backbone's interface


def build_pooling(spec: Any, registry: Registry, experiment: str, channels: int) -> GlobalPooling:
    built = Built(registry, "pooling", spec, "model.pooling", experiment)
    module = built()
    expansion = getattr(module, "expansion", None)
    if not (isinstance(expansion, int) and expansion > 0):
        raise built.error("a pooling needs a positive integer `expansion` (output channels / input channels)")
    with _probing(module):
        shape = (2, channels, PROBE_MAP, PROBE_MAP)
        built.check_shape(
            f"on an input of shape {shape}", built.forward(module, _probe(*shape)), (2, expansion * channels)
        )
        built.check_uses_input(module, shape)
    return module  # type: ignore[return-value]


def gate_builder(multiscale_cfg: MultiscaleCfg, registry: Registry, experiment: str) -> Callable[[int], nn.Module]:
    """gate(width): the configured gate at that width, each one checked to map B x C x H x W to a
    per-element product with its input: where the input is 0 its output must be 0 (a gate that
    returns only its weights, B x C x 1 x 1, would be broadcast by the block's residual sum)."""
    built = Built(registry, "gate", multiscale_cfg.gate, "model.multiscale.gate", experiment)

    def gate(channels: int) -> nn.Module:
        module = built(channels=channels, reduction=multiscale_cfg.reduction)
        with _probing(module):
            shape = (2, channels, PROBE_MAP, PROBE_MAP)
            probe = _probe(*shape) * (_probe(*shape, seed=3) > 0)  # about half the entries 0
            out = built.forward(module, probe)
            built.check_shape(f"on an input of shape {shape}", out, shape)
            if out[probe == 0].abs().max() > 0:
                raise built.error(
                    "its output is not a per-element product with its input (it is not 0 where the input "
                    "is 0): a gate returns `weights * x`"
                )
        return module

    return gate


def build_multiscale(multiscale_cfg: MultiscaleCfg, registry: Registry, experiment: str, channels: int) -> nn.Module:
    gate = gate_builder(multiscale_cfg, registry, experiment)
    built = Built(registry, "block", multiscale_cfg.block, "model.multiscale.block", experiment)
    module = built(channels=channels, gate=gate, blocks=multiscale_cfg.blocks)
    with _probing(module):
        shape = (2, channels, PROBE_MAP, PROBE_MAP)
        built.check_shape(f"on an input of shape {shape}", built.forward(module, _probe(*shape)), shape)
        built.check_uses_input(module, shape)
    return module

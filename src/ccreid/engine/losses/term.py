"""What a loss term is: the contract of every `@loss("name")` member (docs/extending.md).

A term is built once per training as `builder(context, **its params.yaml section but enabled)`
and called once per step from its `start_epoch` on with the step's outputs; it returns one scalar,
already weighted, that the main optimizer minimises with the others — or, for a term that trains
parameters of its own with an optimizer of its own (CAL's clothes classifier, `in_objective =
False`), the value it minimised, logged only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ccreid.core.distributed import World
from ccreid.core.schema import LossCfg


@dataclass
class TermContext:
    """What the trainer gives every term when it builds it."""

    model: nn.Module  # the ReIDModel being trained: its heads (classifiers) are what some terms use
    loss: LossCfg  # the whole resolved `loss` section, for terms tied to another section's settings
    world: World  # the processes of a DDP run: gathers over the global batch, gradient averages
    positive_mask: torch.Tensor  # identities x clothes: 1 where clothes class c belongs to identity i


@dataclass
class Step:
    """What every term sees of one training step (this process's shard of the global batch)."""

    outputs: dict[str, torch.Tensor]  # features, logits, aux_logits (while a term that uses it is on)
    pids: torch.Tensor
    clothes: torch.Tensor
    epoch: int


class LossTerm(nn.Module):
    """One term of the training objective. Parameters a term owns (none of ccreid's own terms have
    any) are trained by the main optimizer and saved in the checkpoint."""

    start_epoch = 0  # before this epoch (0-based) the term is off
    uses_aux = False  # needs the auxiliary head's logits (outputs["aux_logits"])
    in_objective = True  # False: the term optimises its own parameters itself; its value is logged only
    log_name = ""  # its name in the training history; empty: its params.yaml name

    def forward(self, step: Step) -> torch.Tensor:
        raise NotImplementedError

    def set_lr(self, factor: float) -> None:
        """Follow the main schedule's factor this epoch (terms with an optimizer of their own)."""

    def training_state(self) -> dict:
        """What a resumed run needs of the term besides its parameters (an optimizer's state)."""
        return {}

    def load_training_state(self, state: dict) -> None:
        """Restore what training_state returned."""

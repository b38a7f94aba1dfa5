"""Loss term `clothes`: CAL's clothes classifier, trained from `start_epoch` on with an optimizer
of its own on the detached embedding (Gu et al., CVPR 2022; docs/recipe.md)."""

from __future__ import annotations

import torch
from torch import nn

from ccreid.core.errors import CCReIDError
from ccreid.core.registry import loss
from ccreid.engine.losses.identity import cross_entropy_label_smooth
from ccreid.engine.losses.term import LossTerm, Step, TermContext


@loss("clothes")
class ClothesClassifierLoss(LossTerm):
    """Each step: the classifier's label-smoothed cross-entropy on the detached embedding, one step
    of its own Adam (gradients averaged over processes: DDP leaves the classifier alone), before
    the adversarial term uses the updated classifier. Its lr stays constant (CAL's optimizer_cc
    has no scheduler) or follows the main schedule (`lr_schedule: main`). `scale` is the
    classifier's, which the model builder reads."""

    in_objective = False
    log_name = "clothes_classifier"

    def __init__(
        self,
        context: TermContext,
        start_epoch: int,
        scale: float,
        label_smoothing: float,
        lr: float,
        weight_decay: float,
        lr_schedule: str,
    ):
        super().__init__()
        classifier = getattr(context.model, "clothes_classifier", None)
        if classifier is None:
            raise CCReIDError("loss.clothes: the model has no clothes classifier to train")
        self.classifier: list[nn.Module] = [classifier]  # in a list: the model's, not a submodule of the term
        self.world = context.world
        self.start_epoch, self.label_smoothing = start_epoch, label_smoothing
        self.lr, self.lr_schedule = lr, lr_schedule
        self.parameters_trained = list(classifier.parameters())
        self.optimizer = torch.optim.Adam(self.parameters_trained, lr=lr, weight_decay=weight_decay)

    def forward(self, step: Step) -> torch.Tensor:
        logits = self.classifier[0](step.outputs["features"].detach())
        clothes_loss = cross_entropy_label_smooth(logits, step.clothes, self.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        clothes_loss.backward()
        self.world.average_gradients(self.parameters_trained)
        self.optimizer.step()
        return clothes_loss

    def set_lr(self, factor: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr * (factor if self.lr_schedule == "main" else 1.0)

    def training_state(self) -> dict:
        return {"optimizer": self.optimizer.state_dict()}

    def load_training_state(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])

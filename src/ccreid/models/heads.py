"""The re-id head after the pooling: BN neck, correction module, classifiers, auxiliary head."""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from ccreid.models.base import GlobalPooling


class BNNeck(nn.BatchNorm1d):
    """BatchNorm1d between pooling and classifier (Luo et al., "Bag of Tricks", CVPR-W 2019).

    Its output is the embedding used for retrieval. Weight initialised around 1 (std 0.02) and
    bias at 0, as CAL; the bias is trained (CAL, `model.neck_bias: true`) or frozen at 0 (BoT's
    code: the neck only normalises and rescales).
    """

    def __init__(self, num_features: int, train_bias: bool = True):
        super().__init__(num_features)
        nn.init.normal_(self.weight, 1.0, 0.02)
        nn.init.zeros_(self.bias)
        self.bias.requires_grad_(train_bias)


class CorrectionModule(nn.Module):
    """Residual refinement of the embedding: e + MLP(e), MLP = Linear -> ReLU -> Linear.

    The last layer starts at zero, so the module starts as the identity and training only adds
    what helps. Hidden width dim/4 keeps it small next to a 4096-d embedding.
    """

    def __init__(self, dim: int):
        super().__init__()
        hidden_dim = dim // 4
        self.mlp = nn.Sequential(nn.Linear(dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, dim))
        last = cast(nn.Linear, self.mlp[-1])
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return embedding + self.mlp(embedding)


class CosineClassifier(nn.Module):
    """scale * cos(embedding, class weight): logits in [-scale, scale] (CAL's clothes classifier).

    Normalising both sides makes the logits depend on the embedding's direction only, the
    quantity retrieval uses.
    """

    def __init__(self, in_features: int, num_classes: int, scale: float = 16.0):
        super().__init__()
        self.scale = scale
        # random unit-norm rows, as CAL's NormalizedClassifier
        weight = torch.empty(num_classes, in_features).uniform_(-1, 1)
        self.weight = nn.Parameter(F.normalize(weight, dim=1))

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.scale * F.linear(F.normalize(embedding, dim=1), F.normalize(self.weight, dim=1))


def id_classifier(in_features: int, num_ids: int, bias: bool = True) -> nn.Linear:
    """Identity classifier: linear, weight N(0, 0.001), bias 0 (CAL) or no bias (BoT)."""
    classifier = nn.Linear(in_features, num_ids, bias=bias)
    nn.init.normal_(classifier.weight, std=0.001)
    if bias:
        nn.init.zeros_(classifier.bias)
    return classifier


class AuxiliaryHead(nn.Module):
    """Deep-supervision identity head on the mid-level map: pool -> BN neck -> linear, with the
    main head's pooling (its own instance) and bias settings."""

    def __init__(
        self, in_channels: int, num_ids: int, pool: GlobalPooling, neck_bias: bool = True, classifier_bias: bool = True
    ):
        super().__init__()
        self.pool = pool
        self.neck = BNNeck(in_channels * self.pool.expansion, neck_bias)
        self.classifier = id_classifier(in_channels * self.pool.expansion, num_ids, classifier_bias)

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.neck(self.pool(feature_map)))

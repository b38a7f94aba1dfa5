"""The re-id model: backbone -> [multi-scale module] -> pooling -> BN neck -> [correction].

    eval:  forward(x) -> embedding (B x D), the BN-neck output after correction, not normalised
    train: forward(x) -> {"features": embedding, "logits": identity logits,
                          "aux_logits": auxiliary-head logits (only when the aux head exists)}

The clothes classifier is not called in forward: the training loop calls it CAL-style, on the
detached embedding to train it (with its own optimizer) and on the live embedding for the
adversarial loss.
"""

from __future__ import annotations

import torch
from torch import nn

from ccreid.core.registry import Registry
from ccreid.core.schema import LossCfg, ModelCfg
from ccreid.models.base import Backbone, GlobalPooling
from ccreid.models.heads import AuxiliaryHead, BNNeck, CorrectionModule, CosineClassifier, id_classifier
from ccreid.models.members import build_backbone, build_multiscale, build_pooling


class ReIDModel(nn.Module):
    def __init__(
        self,
        backbone: Backbone,
        num_ids: int,
        *,
        pool: GlobalPooling,
        aux_pool: GlobalPooling | None = None,
        multiscale: nn.Module | None = None,
        correction: bool = False,
        num_clothes: int | None = None,
        clothes_scale: float = 16.0,
        neck_bias: bool = True,
        classifier_bias: bool = True,
    ):
        """`multiscale` runs on the final map (same width); `aux_pool` adds an identity head on the
        backbone's mid map, pooled by it; `num_clothes=None` builds no clothes classifier."""
        super().__init__()
        self.backbone = backbone
        self.multiscale = multiscale
        self.pool = pool
        self.embedding_dim = backbone.out_channels * self.pool.expansion
        self.neck = BNNeck(self.embedding_dim, neck_bias)
        self.correction = CorrectionModule(self.embedding_dim) if correction else None
        self.classifier = id_classifier(self.embedding_dim, num_ids, classifier_bias)
        self.aux_head = None
        if aux_pool is not None:
            self.aux_head = AuxiliaryHead(backbone.mid_channels, num_ids, aux_pool, neck_bias, classifier_bias)
        self.clothes_classifier = None
        if num_clothes is not None:
            self.clothes_classifier = CosineClassifier(self.embedding_dim, num_clothes, clothes_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        mid_map, final_map = self.backbone.forward_features(x)
        if self.multiscale is not None:
            final_map = self.multiscale(final_map)
        embedding = self.neck(self.pool(final_map))
        if self.correction is not None:
            embedding = self.correction(embedding)
        if not self.training:
            return embedding
        outputs = {"features": embedding, "logits": self.classifier(embedding)}
        if self.aux_head is not None:
            outputs["aux_logits"] = self.aux_head(mid_map)
        return outputs


def build_model(
    model_cfg: ModelCfg, loss_cfg: LossCfg, num_ids: int, num_clothes: int, registry: Registry, experiment: str
) -> ReIDModel:
    """Build the model from the resolved `model` and `loss` sections of params.yaml, its members
    from `registry`, each checked against its contract (errors name `experiment`)."""
    backbone = build_backbone(model_cfg, registry, experiment)
    multiscale_cfg = model_cfg.multiscale
    multiscale = None
    if multiscale_cfg.enabled:
        multiscale = build_multiscale(multiscale_cfg, registry, experiment, backbone.out_channels)
    clothes_cfg = loss_cfg.clothes
    # distillation needs the auxiliary head as its student even when its own loss is off
    aux_head = loss_cfg.aux.enabled or loss_cfg.distill.enabled
    return ReIDModel(
        backbone,
        num_ids,
        pool=build_pooling(model_cfg.pooling, registry, experiment, backbone.out_channels),
        aux_pool=build_pooling(model_cfg.pooling, registry, experiment, backbone.mid_channels) if aux_head else None,
        multiscale=multiscale,
        correction=model_cfg.correction,
        num_clothes=num_clothes if clothes_cfg.enabled else None,
        clothes_scale=clothes_cfg.scale,
        neck_bias=model_cfg.neck_bias,
        classifier_bias=model_cfg.classifier_bias,
    )

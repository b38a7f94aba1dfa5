"""Backbones, named by params.yaml `model.backbone` (`@backbone("name")`).

Every backbone is built as `builder(last_stride=..., width=..., **its arguments)` and offers the
interface of ccreid.models.base.Backbone: `out_channels` (final map), `mid_channels` (the map
before the last stage: layer3 for ResNets, conv4 for OSNet), `forward_features(x) -> (mid_map,
final_map)`. Its state_dict names are those of the published checkpoint minus the ImageNet
classifier, so `model.pretrained` may point at the published file as downloaded
(ccreid.models.pretrained).
"""

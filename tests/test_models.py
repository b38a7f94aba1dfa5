"""Backbones, pretrained loading, heads and the assembled ReIDModel (CPU, small inputs)."""

from __future__ import annotations

import pytest
import torch
import torchvision

from ccreid.core.errors import CCReIDError
from ccreid.core.registry import registry
from ccreid.core.schema import LossCfg, ModelCfg, deep_merge
from ccreid.models import members
from ccreid.models.heads import CorrectionModule
from ccreid.models.reid import ReIDModel
from ccreid.models.reid import build_model as build_with_registry
from helpers import build_backbone, recipe

IMAGES = (2, 3, 64, 32)

# Overrides of the project's defaults: a tiny backbone, no weight file.
TINY = {"backbone": "resnet_tiny", "pretrained": "none"}


def build_pooling(name: str, channels: int = 8):
    return members.build_pooling(name, registry(), "test", channels)


def build_model(model_cfg: ModelCfg, loss_cfg: LossCfg, num_ids: int, num_clothes: int) -> ReIDModel:
    return build_with_registry(model_cfg, loss_cfg, num_ids, num_clothes, registry(), "test")


def configs(model: dict | None = None, loss: dict | None = None) -> tuple[ModelCfg, LossCfg]:
    """The defaults' model (tiny backbone) and loss sections with nested overrides."""
    cfg = recipe(model=deep_merge(TINY, model or {}), loss=loss or {})
    return cfg.model, cfg.loss


def tiny_model(num_ids: int = 3, num_clothes: int = 5, model: dict | None = None, loss: dict | None = None):
    return build_model(*configs(model, loss), num_ids=num_ids, num_clothes=num_clothes)


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """These tensors are tiny: on a shared 2-core machine a second OpenMP thread only spins
    (measured here: 100 s for this file with 2 threads, 9 s with 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def resnet50():
    return build_backbone("resnet50")


# ---------------------------------------------------------------- backbones


def test_resnet50_names_equal_torchvision(resnet50):
    reference = torchvision.models.resnet50(weights=None).state_dict()
    expected = {k: v.shape for k, v in reference.items() if not k.startswith("fc.")}
    assert {k: v.shape for k, v in resnet50.state_dict().items()} == expected


def test_resnet50_is_torchvisions_network_and_seed_for_seed_its_weights():
    """Our blocks (models/backbones/resnet.py says why they are not imported) against torchvision's
    own ResNet-50: the same seed gives the same weights and leaves the generator at the same point,
    and the same input the same layer4 map (at torchvision's last stride, 2)."""
    torch.manual_seed(0)
    reference = torchvision.models.resnet50(weights=None).eval()
    after_reference = torch.rand(1)
    torch.manual_seed(0)
    ours = build_backbone("resnet50", last_stride=2).eval()
    assert torch.equal(torch.rand(1), after_reference)
    expected = {k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    found = ours.state_dict()
    assert list(found) == list(expected)
    assert [k for k in found if not torch.equal(found[k], expected[k])] == []
    x = torch.randn(IMAGES)
    with torch.no_grad():
        stem = torch.nn.Sequential(reference.conv1, reference.bn1, reference.relu, reference.maxpool)
        layers = [reference.layer1, reference.layer2, reference.layer3, reference.layer4]
        assert torch.equal(ours(x), torch.nn.Sequential(stem, *layers)(x))


def test_last_stride(resnet50):
    assert resnet50.layer4[0].conv2.stride == (1, 1)
    assert resnet50.layer4[0].downsample[0].stride == (1, 1)
    assert build_backbone("resnet50", last_stride=2).layer4[0].conv2.stride == (2, 2)
    tiny_mid, tiny_final = build_backbone("resnet_tiny", last_stride=1).forward_features(torch.randn(IMAGES))
    assert tiny_final.shape[-2:] == tiny_mid.shape[-2:] == (8, 4)
    assert build_backbone("resnet_tiny", last_stride=2)(torch.randn(IMAGES)).shape[-2:] == (4, 2)


def test_resnet50_ibn_a_names_follow_ibn_net():
    keys = set(build_backbone("resnet50_ibn_a").state_dict())
    for key in (
        "conv1.weight",
        "bn1.running_var",
        "layer1.0.bn1.IN.weight",
        "layer1.0.bn1.IN.bias",
        "layer1.0.bn1.BN.weight",
        "layer2.3.bn1.IN.weight",
        "layer3.5.bn1.BN.running_mean",
        "layer3.5.bn2.weight",
        "layer4.0.bn1.running_mean",
        "layer4.0.downsample.1.weight",
    ):
        assert key in keys, key
    assert not any(k.startswith("layer4") and ".IN." in k for k in keys)
    assert "layer1.0.bn1.weight" not in keys
    assert not any(k.startswith("fc.") for k in keys)


def test_ibn_splits_half_channels():
    backbone = build_backbone("resnet50_ibn_a")
    ibn = backbone.layer2[0].bn1
    assert ibn.IN.num_features == 64 and ibn.BN.num_features == 64


def test_osnet_names_follow_torchreid():
    keys = set(build_backbone("osnet_x1_0").state_dict())
    for key in (
        "conv1.conv.weight",
        "conv1.bn.running_mean",
        "conv2.0.conv1.conv.weight",
        "conv2.0.conv2a.conv1.weight",
        "conv2.0.conv2a.conv2.weight",
        "conv2.0.conv2d.3.bn.weight",
        "conv2.0.gate.fc1.weight",
        "conv2.0.gate.fc2.bias",
        "conv2.0.conv3.bn.weight",
        "conv2.0.downsample.conv.weight",
        "conv2.2.0.conv.weight",  # transition inside conv2
        "conv4.1.conv3.conv.weight",
        "conv5.conv.weight",
    ):
        assert key in keys, key
    assert "conv2.1.downsample.conv.weight" not in keys


def test_osnet_ain_names_follow_torchreid():
    keys = set(build_backbone("osnet_ain_x1_0").state_dict())
    for key in (
        "conv1.bn.weight",  # InstanceNorm stem
        "conv2.0.conv2.0.layers.0.conv1.weight",
        "conv2.0.conv2.3.layers.3.conv2.weight",
        "conv2.0.IN.weight",
        "conv3.1.IN.bias",
        "conv4.0.IN.weight",
        "pool2.0.conv.weight",
        "pool3.0.bn.running_var",
        "conv4.1.conv3.bn.weight",
    ):
        assert key in keys, key
    assert "conv1.bn.running_mean" not in keys  # IN has no running statistics
    assert "conv2.0.conv3.bn.weight" not in keys  # OSBlockINin: IN replaces conv3's BN
    assert "conv3.0.IN.weight" not in keys and "conv4.1.IN.weight" not in keys


@pytest.mark.parametrize("name", ["osnet_x1_0", "osnet_ain_x1_0"])
def test_osnet_parameter_count_matches_published(name):
    backbone = build_backbone(name)
    count = sum(p.numel() for p in backbone.parameters())
    # The published 2.2M counts OSNet's 512-d fc embedding layer (Linear 512x512 + BatchNorm1d),
    # which torchreid keeps in the feature extractor and our re-id head replaces.
    fc_layer = 512 * 512 + 512 + 2 * 512
    assert abs(count + fc_layer - 2.2e6) / 2.2e6 < 0.02


@pytest.mark.parametrize("name", sorted(registry().names("backbone")))
def test_backbone_contract(name):
    backbone = build_backbone(name).eval()
    images = torch.randn(IMAGES)
    with torch.no_grad():
        mid_map, final_map = backbone.forward_features(images)
        assert torch.equal(backbone(images), final_map)
    assert mid_map.shape[1] == backbone.mid_channels
    assert final_map.shape[1] == backbone.out_channels


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(CCReIDError, match="resnet50_ibn_a"):
        build_backbone("resnet101")


@pytest.mark.parametrize("name", ["resnet50_ibn_a", "osnet_x1_0", "osnet_ain_x1_0", "resnet_tiny"])
def test_imagenet_without_its_file_says_where_to_put_it(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    expected = "no published ImageNet weights" if name == "resnet_tiny" else f"put it at data/weights/{name}"
    with pytest.raises(CCReIDError, match=expected):
        build_backbone(name, pretrained="imagenet")


# ---------------------------------------------------------------- pretrained files


def tiny_state(**kwargs) -> dict:
    return build_backbone("resnet_tiny", **kwargs).state_dict()


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model", "module_prefix"])
def test_loads_local_weight_file(tmp_path, wrap):
    source = build_backbone("resnet_tiny")
    state = dict(source.state_dict())
    state["fc.weight"] = torch.zeros(10, 128)  # a classifier is ignored
    if wrap == "module_prefix":
        state = {f"module.{k}": v for k, v in state.items()}
    checkpoint = {"plain": state, "module_prefix": state}.get(wrap, {wrap: state, "epoch": 7})
    path = tmp_path / "weights.pth"
    torch.save(checkpoint, path)
    loaded = build_backbone("resnet_tiny", pretrained=str(path))
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_shape_mismatch_names_the_key(tmp_path):
    state = tiny_state()
    state["layer2.0.conv1.weight"] = torch.zeros(3, 3, 3, 3)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(CCReIDError, match=r"layer2\.0\.conv1\.weight") as error:
        build_backbone("resnet_tiny", pretrained=str(path))
    assert "bad.pth" in str(error.value)


def test_missing_and_unexpected_keys_are_named(tmp_path):
    state = tiny_state()
    del state["layer3.0.bn2.weight"]
    del state["bn1.num_batches_tracked"]  # an old-PyTorch file lacks these: tolerated
    state["layer9.weight"] = torch.zeros(1)
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(CCReIDError) as error:
        build_backbone("resnet_tiny", pretrained=str(path))
    message = str(error.value)
    assert "layer3.0.bn2.weight" in message and "layer9.weight" in message
    assert "num_batches_tracked" not in message


def test_missing_weight_file_names_the_path(tmp_path):
    path = tmp_path / "nowhere.pth"
    with pytest.raises(CCReIDError, match="nowhere.pth"):
        build_backbone("resnet_tiny", pretrained=str(path))


def test_unreadable_weight_file_names_the_path(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CCReIDError, match="garbage.pth"):
        build_backbone("resnet_tiny", pretrained=str(path))


# ---------------------------------------------------------------- heads


@pytest.mark.parametrize("name", sorted(registry().names("pooling")))
def test_pooling(name):
    x = torch.rand(2, 8, 4, 3) + 0.1
    pooled = build_pooling(name)(x)
    flat = x.flatten(2)
    expected = {
        "avg": flat.mean(2),
        "max": flat.amax(2),
        "gem": flat.pow(3).mean(2).pow(1 / 3),
        "maxavg": torch.cat([flat.amax(2), flat.mean(2)], 1),
    }[name]
    torch.testing.assert_close(pooled, expected)


def test_gem_power_is_learnable():
    gem = build_pooling("gem")
    assert [p.item() for p in gem.parameters()] == [3.0]


def test_unknown_pooling_lists_valid_names():
    with pytest.raises(CCReIDError, match="maxavg"):
        build_pooling("mean")


def test_correction_module_is_identity_at_init():
    module = CorrectionModule(16)
    embedding = torch.randn(4, 16)
    torch.testing.assert_close(module(embedding), embedding, atol=0, rtol=0)


def test_cosine_clothes_classifier_is_scaled_cosine():
    model = tiny_model(loss={"clothes": {"scale": 16.0}})
    features = torch.randn(4, model.embedding_dim)
    logits = model.clothes_classifier(features)
    assert logits.shape == (4, 5)
    assert logits.abs().max() <= 16.0 + 1e-4
    torch.testing.assert_close(model.clothes_classifier(features * 7), logits)


def test_head_biases_are_trained_as_cal_or_off_as_bot():
    cal = tiny_model(loss={"aux": {"enabled": True}})
    for head in (cal, cal.aux_head):
        assert head.neck.bias.requires_grad and head.classifier.bias is not None
        assert float(head.classifier.bias.detach().abs().max()) == 0.0
    bot = tiny_model(model={"neck_bias": False, "classifier_bias": False})
    assert not bot.neck.bias.requires_grad and bot.classifier.bias is None


# ---------------------------------------------------------------- ReIDModel


def test_baseline_resnet50_embedding_is_4096():
    model = tiny_model(model={"backbone": "resnet50"})
    assert model.embedding_dim == 4096
    assert model.multiscale is None and model.correction is None and model.aux_head is None


def run_train_step(model: ReIDModel, num_ids: int) -> dict:
    model.train()
    outputs = model(torch.randn(IMAGES))
    loss = torch.nn.functional.cross_entropy(outputs["logits"], torch.arange(IMAGES[0]) % num_ids)
    loss = loss + outputs["features"].square().mean()
    if "aux_logits" in outputs:
        loss = loss + outputs["aux_logits"].logsumexp(1).mean()
    loss.backward()
    return outputs


@pytest.mark.parametrize("gate", sorted(registry().names("gate")))
def test_multiscale_forward_backward_with_every_gate(gate):
    model = tiny_model(4, 6, model={"multiscale": {"enabled": True, "gate": gate}})
    assert len(model.multiscale) == 2
    run_train_step(model, num_ids=4)
    gate_parameters = [p for name, p in model.multiscale.named_parameters() if ".gate." in name]
    assert gate_parameters and all(p.grad is not None for p in gate_parameters)


def test_aux_distill_correction_forward_backward():
    model = tiny_model(
        4,
        6,
        model={"correction": True, "multiscale": {"enabled": True, "gate": "se_avgmax"}},
        loss={"aux": {"enabled": True}, "distill": {"enabled": True}},
    )
    outputs = run_train_step(model, num_ids=4)
    assert set(outputs) == {"features", "logits", "aux_logits"}
    assert outputs["aux_logits"].shape == (2, 4)
    assert all(p.grad is not None for p in model.aux_head.parameters() if p.requires_grad)
    assert all(p.grad is not None for p in model.correction.parameters())


def test_distill_alone_builds_the_aux_head():
    assert tiny_model(loss={"distill": {"enabled": True}}).aux_head is not None


def test_clothes_classifier_off_and_not_called_in_forward():
    assert tiny_model(loss={"clothes": {"enabled": False}}).clothes_classifier is None
    model = tiny_model()
    run_train_step(model, num_ids=3)
    assert model.clothes_classifier.weight.grad is None


def test_train_and_eval_outputs():
    model = tiny_model(model={"correction": True})
    images = torch.randn(IMAGES)
    outputs = model.train()(images)
    assert set(outputs) == {"features", "logits"}
    assert outputs["features"].shape == (2, model.embedding_dim)
    assert outputs["logits"].shape == (2, 3)
    with torch.no_grad():
        embedding = model.eval()(images)
    assert isinstance(embedding, torch.Tensor) and embedding.shape == (2, model.embedding_dim)
    assert not torch.allclose(embedding.norm(dim=1), torch.ones(2))  # not normalised

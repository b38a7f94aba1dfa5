"""ImageNet weights as a file of the DAG: fetched once, checked, never downloaded by a training job.
No test downloads: files are placed at the path, or served from file:// URLs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
import torchvision

from ccreid.cli import main
from ccreid.core import weights
from ccreid.core.errors import CCReIDError
from ccreid.core.weights import PublishedWeights, fetch_weights, weights_path
from helpers import build_backbone, edit_params, run

RESNET50_FILE = Path("data/weights/resnet50-0676ba61.pth")


@pytest.fixture(scope="module")
def seeded_resnet50(tmp_path_factory) -> Path:
    """A torchvision-architecture ResNet-50 state_dict with seeded random weights."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "resnet50-seeded.pth"
    torch.save(torchvision.models.resnet50().state_dict(), path)
    return path


def place(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(source.read_bytes())


def test_training_never_downloads_it_names_url_and_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CCReIDError) as error:
        build_backbone("resnet50", pretrained="imagenet")
    message = str(error.value)
    assert str(RESNET50_FILE) in message and "https://download.pytorch.org/models/resnet50-0676ba61.pth" in message
    assert "ccreid weights --backbone resnet50" in message
    assert not (tmp_path / "data").exists()


def test_a_placed_file_is_what_imagenet_loads(tmp_path, monkeypatch, seeded_resnet50):
    monkeypatch.chdir(tmp_path)
    place(seeded_resnet50, RESNET50_FILE)
    backbone = build_backbone("resnet50", pretrained="imagenet")
    source = torch.load(seeded_resnet50, weights_only=True)
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, source[key]), key


def test_the_resnet50_file_is_torchvisions_imagenet1k_v1():
    """core.weights names the file without importing torchvision; it must stay torchvision's."""
    resnet50 = weights.IMAGENET_WEIGHTS["resnet50"]
    assert resnet50.url == torchvision.models.ResNet50_Weights.IMAGENET1K_V1.url
    assert resnet50.url.rsplit("/", 1)[1] == resnet50.file == RESNET50_FILE.name


def test_backbone_without_published_weights_is_refused():
    with pytest.raises(CCReIDError, match="resnet_tiny.*no published ImageNet weights"):
        weights_path("resnet_tiny")


def test_a_file_with_the_wrong_digest_is_refused_naming_both(tmp_path, monkeypatch, seeded_resnet50, capsys):
    monkeypatch.chdir(tmp_path)
    place(seeded_resnet50, RESNET50_FILE)
    assert main(["weights", "--backbone", "resnet50"]) == 2
    message = capsys.readouterr().err
    actual = hashlib.sha256(seeded_resnet50.read_bytes()).hexdigest()
    assert message.count("ccreid: error:") == 1 and actual in message and "0676ba61" in message
    assert RESNET50_FILE.read_bytes() == seeded_resnet50.read_bytes()  # the user's file is left alone


def serve(monkeypatch, source: Path, digest: str | None) -> None:
    """Publish `source` as resnet50's weights under a file:// URL (urllib opens those too)."""
    monkeypatch.setitem(
        weights.IMAGENET_WEIGHTS, "resnet50", PublishedWeights(RESNET50_FILE.name, source.resolve().as_uri(), digest)
    )


def test_fetch_writes_the_checked_file_once(tmp_path, monkeypatch, seeded_resnet50):
    monkeypatch.chdir(tmp_path)
    serve(monkeypatch, seeded_resnet50, hashlib.sha256(seeded_resnet50.read_bytes()).hexdigest()[:8])
    assert fetch_weights("resnet50") == RESNET50_FILE
    assert RESNET50_FILE.read_bytes() == seeded_resnet50.read_bytes()
    assert sorted(p.name for p in RESNET50_FILE.parent.iterdir()) == [RESNET50_FILE.name]
    serve(monkeypatch, tmp_path / "gone.pth", None)  # a file already there is not fetched again
    assert fetch_weights("resnet50") == RESNET50_FILE


def test_a_download_with_the_wrong_digest_leaves_nothing(tmp_path, monkeypatch, seeded_resnet50):
    monkeypatch.chdir(tmp_path)
    serve(monkeypatch, seeded_resnet50, "00000000")
    with pytest.raises(CCReIDError, match="does not match the published digest 00000000"):
        fetch_weights("resnet50")
    assert list(RESNET50_FILE.parent.iterdir()) == []


def test_no_network_names_the_url_and_the_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(
        weights.IMAGENET_WEIGHTS,
        "resnet50",
        PublishedWeights(RESNET50_FILE.name, "http://127.0.0.1:9/resnet50-0676ba61.pth", "0676ba61"),
    )
    with pytest.raises(CCReIDError) as error:
        fetch_weights("resnet50")
    assert "http://127.0.0.1:9/resnet50-0676ba61.pth" in str(error.value) and str(RESNET50_FILE) in str(error.value)
    assert list(RESNET50_FILE.parent.iterdir()) == []


def test_osnet_weights_are_the_users_file():
    with pytest.raises(CCReIDError, match="model zoo.*data/weights/osnet_x1_0_imagenet.pth"):
        fetch_weights("osnet_x1_0", root=Path("/nonexistent/data/weights"))


def imagenet_on_synthetic(params: dict, backbone: str = "resnet50") -> None:
    params["datasets"]["synthetic"]["overrides"]["model"] = {"backbone": backbone, "pretrained": "imagenet"}


@pytest.mark.slow
def test_snakemake_fetches_weights_before_training_and_plans_refuse_a_backbone_without(project):
    edit_params(project, imagenet_on_synthetic)
    plan = run(["snakemake", "-n", "--cores", "1", "results/synthetic/212/model.pt"], cwd=project).stdout
    assert "rule weights:" in plan and str(RESNET50_FILE) in plan and "rule train:" in plan
    assert plan.index("rule weights:") < plan.index("rule train:")
    edit_params(project, lambda params: imagenet_on_synthetic(params, "resnet_tiny"))
    refused = run(["snakemake", "-n", "--cores", "1", "results/synthetic/212/model.pt"], cwd=project, check=False)
    assert refused.returncode != 0 and "resnet_tiny" in refused.stdout + refused.stderr

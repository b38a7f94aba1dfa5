"""ImageNet weights as a file of the DAG: `model.pretrained: imagenet` reads
`data/weights/<published file name>`, which `ccreid weights` fetches once and checks.

A training job never downloads: without the file it stops with the URL to fetch it from and the
path to put it at, so a compute node without network learns what to do before any work starts.
The published digest is the SHA-256 prefix in the file's name (torch.hub's convention, which
torchvision's and IBN-Net's releases follow); a file whose digest differs is refused by
`ccreid weights`. OSNet's ImageNet weights come from torchreid's model zoo, a Google Drive folder
without a stable URL: the user places the file, and it is used as is.

No torch here (torch.hub is imported by the download alone): the workflow reads these file names
each time it plans, and a no-op rerun must not pay torch's import (benchmarks/noop_rerun.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ccreid.core.atomic import atomic_path
from ccreid.core.errors import CCReIDError

if TYPE_CHECKING:
    from ccreid.core.schema import ModelCfg

WEIGHTS_DIR = Path("data/weights")


@dataclass(frozen=True)
class PublishedWeights:
    file: str  # the published file name, kept so a hand-downloaded file can be dropped in as is
    url: str | None  # None: no stable download address; the user places the file
    sha256_prefix: str | None  # the digest published with the file (None: not published)


# params.yaml `model.backbone` -> its ImageNet weights (`model.pretrained: imagenet`).
IMAGENET_WEIGHTS = {
    "resnet50": PublishedWeights(
        "resnet50-0676ba61.pth", "https://download.pytorch.org/models/resnet50-0676ba61.pth", "0676ba61"
    ),  # what CAL loads: torchvision's ResNet50_Weights.IMAGENET1K_V1 (a test checks the URL)
    "resnet50_ibn_a": PublishedWeights(
        "resnet50_ibn_a-d9d0bb7b.pth",
        "https://github.com/XingangPan/IBN-Net/releases/download/v1.0/resnet50_ibn_a-d9d0bb7b.pth",
        "d9d0bb7b",
    ),
    "osnet_x1_0": PublishedWeights("osnet_x1_0_imagenet.pth", None, None),
    "osnet_ain_x1_0": PublishedWeights("osnet_ain_x1_0_imagenet.pth", None, None),
}
OSNET_SOURCE = "torchreid's model zoo (https://kaiyangzhou.github.io/deep-person-reid/MODEL_ZOO, ImageNet weights)"


def published(backbone: str) -> PublishedWeights:
    if backbone not in IMAGENET_WEIGHTS:
        raise CCReIDError(
            f"model.pretrained: 'imagenet': backbone {backbone!r} has no published ImageNet weights "
            f"(those that do: {', '.join(IMAGENET_WEIGHTS)}); set model.pretrained to 'none' or a file path"
        )
    return IMAGENET_WEIGHTS[backbone]


def weights_path(backbone: str, root: Path = WEIGHTS_DIR) -> Path:
    return Path(root) / published(backbone).file


def _where_from(weights: PublishedWeights) -> str:
    return weights.url or OSNET_SOURCE


def require_weights(backbone: str, root: Path = WEIGHTS_DIR) -> Path:
    """The ImageNet weight file of `backbone`; an error saying how to get it when it is absent."""
    path = weights_path(backbone, root)
    if not path.is_file():
        weights = published(backbone)
        fetch = f"run `ccreid weights --backbone {backbone}` (snakemake does) or " if weights.url else ""
        raise CCReIDError(
            f"model.pretrained: 'imagenet': {path} is missing; {fetch}download it from "
            f"{_where_from(weights)} and put it at {path}"
        )
    return path


def pretrained_file(model_cfg: ModelCfg) -> Path | None:
    """The weight file `model.pretrained` names (None for 'none'); an error when it is absent."""
    pretrained = model_cfg.pretrained
    if pretrained == "none":
        return None
    if pretrained == "imagenet":
        return require_weights(model_cfg.backbone_name)
    path = Path(pretrained)
    if not path.is_file():
        raise CCReIDError(f"model.pretrained: no weight file at {path} (expected 'none', 'imagenet' or a file path)")
    return path


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def check_digest(path: Path, weights: PublishedWeights) -> None:
    if weights.sha256_prefix is None:
        return
    actual = sha256(path)
    if not actual.startswith(weights.sha256_prefix):
        raise CCReIDError(
            f"{path}: SHA-256 {actual} does not match the published digest {weights.sha256_prefix}… of "
            f"{weights.url}; delete the file and fetch it again (`ccreid weights`)"
        )


def fetch_weights(backbone: str, root: Path = WEIGHTS_DIR) -> Path:
    """Put the published ImageNet weights of `backbone` under `root`, checked against their digest.
    A file already there is checked and kept; nothing is written unless the download is complete
    and its digest matches."""
    weights, path = published(backbone), weights_path(backbone, root)
    if path.is_file():
        check_digest(path, weights)
        return path
    if weights.url is None:
        require_weights(backbone, root)  # raises: only the user can place this one
    assert weights.url is not None  # require_weights above raised: the file is absent
    import torch.hub  # torch's own downloader (progress, redirects); the digest is checked below

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        try:
            torch.hub.download_url_to_file(weights.url, str(tmp), hash_prefix=None, progress=False)
        except OSError as error:  # URLError, connection refused, DNS failure, full disk ...
            raise CCReIDError(
                f"cannot download {weights.url} ({error}); on a machine with network download it "
                f"and put it at {path} (or copy data/weights/ here)"
            ) from None
        check_digest(tmp, weights)
    return path

"""Re-id models: backbones, the lab log's gates and modules, and the assembled ReIDModel."""

from ccreid.models.backbones import BACKBONES, build_backbone
from ccreid.models.gates import GATES, build_gate
from ccreid.models.heads import POOLINGS
from ccreid.models.reid import ReIDModel, build_model

from ccreid.core.errors import CCReIDError, registered


def check_names(run_cfg: dict) -> None:
    """Stop on a name no registry holds before a stage takes a lock or writes anything."""
    model = run_cfg["model"]
    try:
        registered(BACKBONES, model["backbone"], "model.backbone", "backbone")
        registered(POOLINGS, model["pooling"], "model.pooling", "pooling")
        if model["multiscale"]["enabled"]:
            registered(GATES, model["multiscale"]["gate"], "model.multiscale.gate", "gate")
    except CCReIDError as error:
        raise CCReIDError(f"experiment {run_cfg['experiment']!r}: {error}") from None


__all__ = ["BACKBONES", "GATES", "POOLINGS", "ReIDModel", "build_backbone", "build_gate", "build_model", "check_names"]

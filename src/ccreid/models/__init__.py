"""Re-id models: backbones, the lab log's gates and modules, and the assembled ReIDModel."""

from ccreid.models.backbones import BACKBONES, build_backbone
from ccreid.models.gates import GATES, build_gate
from ccreid.models.heads import POOLINGS
from ccreid.models.reid import ReIDModel, build_model

__all__ = ["BACKBONES", "GATES", "POOLINGS", "ReIDModel", "build_backbone", "build_gate", "build_model"]

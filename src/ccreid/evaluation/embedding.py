"""Embeddings of prepared images with a trained model: what extraction writes to features.h5
and what evaluation during training (ccreid.evaluation.validation) scores, from one loop."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from ccreid.core.devices import AUTOCAST_DTYPES, channels_last
from ccreid.core.schema import EvalCfg
from ccreid.data.images import read_rows
from ccreid.data.normalization import to_normalized_float
from ccreid.data.prepared import PreparedData


@torch.no_grad()
def embed(model: torch.nn.Module, images: torch.Tensor, eval_cfg: EvalCfg, device: torch.device) -> np.ndarray:
    """L2-normalised embeddings of uint8 images, averaged with their mirror image when eval.flip;
    eval.amp sets the autocast precision and eval.memory_format the input layout, on any device.
    The model is left as it is: during training it is the model being trained (monitors)."""
    out = []
    dtype = AUTOCAST_DTYPES.get(eval_cfg.amp)
    nhwc = channels_last(eval_cfg.memory_format, device)
    batch_size = eval_cfg.batch_size
    for start in range(0, len(images), batch_size):
        batch = to_normalized_float(images[start : start + batch_size].to(device))
        if nhwc:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            feats = model(batch).float()
            if eval_cfg.flip:
                feats = feats + model(batch.flip(3)).float()
        out.append(F.normalize(feats, dim=1).cpu())
    return torch.cat(out).numpy().astype(np.float32)


def embed_splits(
    model: torch.nn.Module, data: PreparedData, eval_cfg: EvalCfg, device: torch.device
) -> dict[str, dict]:
    """Embeddings and labels of every split a protocol of the data set uses."""
    if channels_last(eval_cfg.memory_format, device):
        model = model.to(memory_format=torch.channels_last)  # weights in the inputs' layout
    splits = {}
    for split in sorted({p.query for p in data.protocols} | {p.gallery for p in data.protocols}):
        rows = data.samples.index[data.samples["split"] == split].to_numpy()
        part = data.samples.loc[rows]
        splits[split] = {
            "feats": embed(model, read_rows(data.images_path, rows), eval_cfg, device),
            "pids": part["pid"].to_numpy(np.int64),
            "camids": part["camid"].to_numpy(np.int64),
            "clothes": part["clothes_label"].to_numpy(np.int64),
            "paths": part["path"].tolist(),
        }
    return splits

"""Per-box statistics and normalisation, shared by the loader and the augmentation.

Every subtomogram is normalised on its own to zero mean and unit standard deviation (``(x - mean) / std``; a
constant box only has its mean removed). Statistics are two-pass (mean, then the mean squared deviation) with
torch's float32 sums, which are cascaded (pairwise-like: relative error ~1e-6 for a 40³ box) and about 10x
faster on this CPU than ``torch.var`` or sums with float64 accumulation.
"""

from __future__ import annotations

import numpy as np
import torch


def row_var_mean(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Population variance and mean of each row of a ``(n, m)`` float32 tensor, as ``(n, 1)`` float64 tensors."""
    mean = flat.sum(dim=1, keepdim=True) / flat.shape[1]
    dev = flat - mean
    var = dev.square_().sum(dim=1, keepdim=True) / flat.shape[1]
    return var.double(), mean.double()


def normalise(volumes: np.ndarray) -> np.ndarray:
    """Per-box zero mean / unit std of ``(n, d, h, w)`` volumes (float32; constant boxes only centred)."""
    v = torch.from_numpy(np.ascontiguousarray(volumes, dtype=np.float32))
    flat = v.reshape(v.shape[0], -1) if v.ndim > 1 else v.reshape(1, -1)
    var, mean = row_var_mean(flat)
    std = torch.sqrt(var)
    std[std == 0] = 1.0
    return ((flat - mean.float()) / std.float()).reshape(v.shape).numpy()

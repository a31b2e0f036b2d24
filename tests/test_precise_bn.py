"""Precise BN: running statistics re-estimated as the plain average over the given batches, weights untouched."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cryomine.train.batchnorm import recalibrate_batchnorm
from cryomine.train.runtime import Runtime


class _Data:
    def __init__(self, x: torch.Tensor) -> None:
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def batch(self, rows: np.ndarray, rng: np.random.Generator | None = None) -> dict[str, torch.Tensor]:
        return {"x": self.x[torch.as_tensor(rows)]}


def test_running_stats_equal_batch_statistics_and_weights_unchanged():
    torch.manual_seed(0)
    conv, bn = nn.Conv3d(1, 4, 3, padding=1), nn.BatchNorm3d(4)
    model = nn.Sequential(conv, bn, nn.Dropout(0.5))
    bn.running_mean.fill_(5.0)  # stale statistics
    bn.running_var.fill_(9.0)
    x = torch.randn(8, 1, 6, 7, 5) * 3 + 1
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}
    rng_before = torch.random.get_rng_state()
    runtime = Runtime(torch.device("cpu"), bf16=False, channels_last=False)
    used = recalibrate_batchnorm(model.eval(), _Data(x), batch_size=8, n_batches=1, runtime=runtime, seed=0)
    assert used == 8 and not model.training and bn.momentum == 0.1
    with torch.no_grad():
        a = conv(x)
    torch.testing.assert_close(bn.running_mean, a.mean(dim=(0, 2, 3, 4)), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(bn.running_var, a.var(dim=(0, 2, 3, 4), unbiased=True), rtol=1e-4, atol=1e-5)
    for k, v in weights.items():
        assert torch.equal(model.state_dict()[k], v), k
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # training's random stream is not disturbed

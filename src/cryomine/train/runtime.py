"""Where and how tensors are computed during training and evaluation: :class:`Runtime`."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class Runtime:
    """Where and how tensors are computed: device, bf16 autocast, memory format."""

    device: torch.device
    bf16: bool
    channels_last: bool

    def autocast(self) -> Any:
        """The autocast context for forward passes (a no-op without bf16)."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else nullcontext()

    def to_device(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Move a batch to the device (the input ``x`` in channels_last_3d if enabled)."""
        out = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        if self.channels_last:
            out["x"] = out["x"].contiguous(memory_format=torch.channels_last_3d)
        return out

    def prepare(self, model: nn.Module) -> nn.Module:
        """Move ``model`` to the device (and memory format), in place."""
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last_3d)
        return model

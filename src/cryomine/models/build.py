"""Build the network a :class:`~cryomine.models.config.ModelConfig` describes (above the config and the nets)."""

from __future__ import annotations

import torch
from torch import nn

from cryomine.errors import InputError
from cryomine.models.baselines import SSN3DED, DSRF3Dv2
from cryomine.models.config import DSMNET_NAMES, ModelConfig
from cryomine.models.dsmnet import DSMNet
from cryomine.resources import check_memory

__all__ = ["build_model", "parameter_count", "check_model_memory"]


def build_model(config: ModelConfig) -> nn.Module:
    """Instantiate the network described by ``config`` (freshly initialised, in training mode).

    Every model maps an ``(n, 1, d, h, w)`` float tensor to a :class:`cryomine.models.blocks.ModelOutput`.
    """
    if not isinstance(config, ModelConfig):
        raise InputError(f"build_model needs a ModelConfig, got {type(config).__name__}")
    if config.name in DSMNET_NAMES:
        return DSMNet(config)
    return SSN3DED(config) if config.name == "ssn3d-ed" else DSRF3Dv2(config)


def parameter_count(config: ModelConfig) -> int:
    """Parameters of the network ``config`` describes, counted on torch's meta device (nothing allocated)."""
    with torch.device("meta"):
        model = build_model(config)
    return sum(p.numel() for p in model.parameters())


def check_model_memory(config: ModelConfig, *, training: bool) -> int:
    """Refuse (naming ``--base-channels/--fc-units``) a network whose weights (float32; x4 when training: with
    gradients and Adam's two moments) exceed the available memory, before it is allocated. Returns the
    parameter count."""
    n = parameter_count(config)
    factor = 4 if training else 1
    what = f"a {config.name} of {n:,} parameters ({'weights, gradients and optimiser state' if training else 'weights'})"
    check_memory(4.0 * factor * n, what, "--base-channels/--fc-units")
    return n

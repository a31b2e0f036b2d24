"""Build the network a :class:`~cryomine.models.config.ModelConfig` describes (above the config and the nets)."""

from __future__ import annotations

from torch import nn

from cryomine.errors import InputError
from cryomine.models.baselines import SSN3DED, DSRF3Dv2
from cryomine.models.config import DSMNET_NAMES, ModelConfig
from cryomine.models.dsmnet import DSMNet

__all__ = ["build_model"]


def build_model(config: ModelConfig) -> nn.Module:
    """Instantiate the network described by ``config`` (freshly initialised, in training mode).

    Every model maps an ``(n, 1, d, h, w)`` float tensor to a :class:`cryomine.models.blocks.ModelOutput`.
    """
    if not isinstance(config, ModelConfig):
        raise InputError(f"build_model needs a ModelConfig, got {type(config).__name__}")
    if config.name in DSMNET_NAMES:
        return DSMNet(config)
    return SSN3DED(config) if config.name == "ssn3d-ed" else DSRF3Dv2(config)

"""Shared building blocks of the cryomine networks and their output container.

Every 3-D convolution here is 3x3x3 with padding 1 and is followed by batch norm (optional, see
``ModelConfig.batch_norm``) and a ReLU; the only exceptions are the 1x1x1 output convolutions of the heads, which
produce raw logits / densities. Tensors are ``(n, c, d, h, w)`` with spatial axes ``(z, y, x)``.

Nothing in here needs a dtype other than what ``torch.autocast("cpu", dtype=torch.bfloat16)`` gives it, and every
op works in ``torch.channels_last_3d`` memory format.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor, nn

from cryomine.errors import InputError

#: Every spatial input dimension must be a multiple of this (three stride-2 reductions).
SIZE_MULTIPLE = 8


@dataclass(frozen=True)
class ModelOutput:
    """What every cryomine model returns; a head the model lacks is ``None``.

    Attributes:
        logits: ``(n, C)`` class logits (no softmax applied).
        seg_logits: ``(n, 2, d, h, w)`` voxel logits, channel 0 = background, 1 = macromolecule (no softmax).
        recon: ``(n, 1, d, h, w)`` coarse structure recovery (linear output, regressed with MSE).
        features: ``(n, fc_units)`` the post-ReLU hidden fully connected layer of the classifier (1024 units by
            default; the last hidden layer for DSRF3D-v2), for clustering / discovery.
    """

    logits: Tensor | None = None
    seg_logits: Tensor | None = None
    recon: Tensor | None = None
    features: Tensor | None = None

    def class_proba(self) -> Tensor:
        """``(n, C)`` float32 class probabilities (softmax of ``logits``)."""
        if self.logits is None:
            raise InputError("this model has no classification head, so there are no class probabilities")
        return torch.softmax(self.logits.float(), dim=1)

    def seg_proba(self) -> Tensor:
        """``(n, d, h, w)`` float32 per-voxel probability of the macromolecule class (voxel softmax, channel 1)."""
        if self.seg_logits is None:
            raise InputError("this model has no segmentation head, so there are no voxel probabilities")
        return torch.softmax(self.seg_logits.float(), dim=1)[:, 1]

    def float(self) -> ModelOutput:
        """Copy with every present tensor as contiguous float32 (e.g. after a bf16 autocast forward)."""
        return ModelOutput(
            **{f.name: None if (t := getattr(self, f.name)) is None else t.float().contiguous() for f in fields(self)}
        )

    def detach(self) -> ModelOutput:
        """Copy with every present tensor detached from the autograd graph."""
        return ModelOutput(
            **{f.name: None if (t := getattr(self, f.name)) is None else t.detach() for f in fields(self)}
        )


def check_input(x: Tensor, expected_zyx: tuple[int, int, int] | None = None) -> None:
    """Raise :class:`InputError` unless ``x`` is an ``(n, 1, d, h, w)`` floating batch the models accept.

    Each of ``d, h, w`` must be a positive multiple of 8; if ``expected_zyx`` is given (models with a flattening
    fully connected layer), the spatial shape must equal it.
    """
    if not isinstance(x, Tensor):
        raise InputError(f"model input must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 5 or x.shape[1] != 1:
        raise InputError(f"model input must have shape (n, 1, d, h, w), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise InputError(f"model input must be floating point, got dtype {x.dtype}")
    zyx = tuple(int(s) for s in x.shape[2:])
    if any(s < SIZE_MULTIPLE or s % SIZE_MULTIPLE for s in zyx):
        raise InputError(f"subtomogram size (d, h, w) = {zyx} must be positive multiples of {SIZE_MULTIPLE}")
    if expected_zyx is not None and zyx != tuple(expected_zyx):
        raise InputError(f"this model was built for input size {tuple(expected_zyx)}, got {zyx}")


class ConvBNReLU3d(nn.Sequential):
    """3x3x3 convolution (padding 1, stride 1 or 2) + batch norm + ReLU.

    ``(n, c_in, d, h, w) -> (n, c_out, d/stride, h/stride, w/stride)``.
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1, batch_norm: bool = True) -> None:
        layers: list[nn.Module] = [nn.Conv3d(c_in, c_out, 3, stride=stride, padding=1, bias=not batch_norm)]
        if batch_norm:
            layers.append(nn.BatchNorm3d(c_out))
        layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class DeconvBNReLU3d(nn.Sequential):
    """3x3x3 stride-2 transposed convolution + batch norm + ReLU; exactly doubles each spatial size.

    ``(n, c_in, d, h, w) -> (n, c_out, 2d, 2h, 2w)`` (padding 1, output_padding 1).
    """

    def __init__(self, c_in: int, c_out: int, batch_norm: bool = True) -> None:
        layers: list[nn.Module] = [
            nn.ConvTranspose3d(c_in, c_out, 3, stride=2, padding=1, output_padding=1, bias=not batch_norm)
        ]
        if batch_norm:
            layers.append(nn.BatchNorm3d(c_out))
        layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ResidualBlock3d(nn.Module):
    """Basic 3-D residual block: ``relu(x + bn(conv(relu(bn(conv(x))))))``, shape and channels preserved."""

    def __init__(self, channels: int, batch_norm: bool = True) -> None:
        super().__init__()
        self.conv1 = ConvBNReLU3d(channels, channels, batch_norm=batch_norm)
        self.conv2 = nn.Conv3d(channels, channels, 3, padding=1, bias=not batch_norm)
        self.bn2 = nn.BatchNorm3d(channels) if batch_norm else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """``(n, c, d, h, w) -> (n, c, d, h, w)``."""
        return self.relu(x + self.bn2(self.conv2(self.conv1(x))))


class ClassifierHead(nn.Module):
    """Fully connected classifier: ``n_hidden`` x [Linear(fc_units) + ReLU + Dropout], then Linear(n_classes).

    ``forward`` returns ``(logits (n, n_classes), features (n, fc_units))``; features are the last hidden layer
    after its ReLU and before its dropout.
    """

    def __init__(self, in_features: int, fc_units: int, n_classes: int, dropout: float, n_hidden: int = 1) -> None:
        super().__init__()
        hidden: list[nn.Module] = []
        for i in range(n_hidden):
            if i > 0:
                hidden.append(nn.Dropout(dropout))
            hidden += [nn.Linear(in_features if i == 0 else fc_units, fc_units), nn.ReLU(inplace=True)]
        self.hidden = nn.Sequential(*hidden)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(fc_units, n_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(n, in_features) -> (logits (n, n_classes), features (n, fc_units))``."""
        features = self.hidden(x)
        return self.out(self.dropout(features)), features


def init_weights(model: nn.Module) -> None:
    """He (fan-out, ReLU) init for all convolutions (output heads included: their larger initial outputs train
    the decoder faster than PyTorch's default), unit/zero batch norm, PyTorch defaults for linear layers."""
    for m in model.modules():
        if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

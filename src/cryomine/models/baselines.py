"""Single-task baselines compared with DSM-Net: DSRF3D-v2 (classification) and SSN3D-ED (segmentation).

Both use the same conventions as :mod:`cryomine.models.dsmnet` (3x3x3 convs + batch norm + ReLU, b =
``base_channels`` = 32, inputs ``(n, 1, d, h, w)`` with sides that are multiples of 8) so that comparisons differ
only in architecture.

**DSRF3D-v2** (Che et al., "Improved deep learning-based macromolecules structure classification from electron
cryo-tomograms", 2017/2018): a 3-D VGG-style classifier. Shapes for 40^3:

    conv b, conv b, max pool 2          32 x 20^3
    conv 2b, conv 2b, max pool 2        64 x 10^3
    conv 4b, conv 4b, max pool 2        128 x 5^3
    flatten                             16000
    FC 1024 + ReLU + dropout 0.7        1024
    FC 1024 + ReLU (= features)         1024
    dropout 0.7, FC C                   C (logits)

The flattening FC layer ties the model to ``config.input_size`` (18,316,022 parameters at 40^3, C=22).

**SSN3D-ED** (Liu, Zeng, Lin, Liang, Freyberg, Xing, Xu, "Deep learning based supervised semantic segmentation of
electron cryo-subtomograms", ICIP 2018), the encoder-decoder variant. Our reading (the exact layer list is not
reproduced here): a VGG encoder identical to DSRF3D-v2's convolutional part, and a mirrored decoder of three
[stride-2 3x3x3 deconvolution + 3x3x3 conv] stages, then a 1x1x1 conv to 2 channels; no skip connections.
Shapes for 40^3:

    encoder (as above)                  128 x 5^3
    deconv s2 2b, conv 2b               64 x 10^3
    deconv s2 b, conv b                 32 x 20^3
    deconv s2 b, conv b                 32 x 40^3
    conv 1x1x1                          2 x 40^3 (seg_logits)

It is fully convolutional and accepts any input whose sides are multiples of 8.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cryomine.models.blocks import (
    ClassifierHead,
    ConvBNReLU3d,
    DeconvBNReLU3d,
    ModelOutput,
    check_input,
    init_weights,
)
from cryomine.models.config import ModelConfig


def vgg_encoder(b: int, batch_norm: bool) -> nn.Sequential:
    """``[b, b]-pool-[2b, 2b]-pool-[4b, 4b]-pool``: ``(n, 1, d, h, w) -> (n, 4b, d/8, h/8, w/8)``."""
    layers: list[nn.Module] = []
    c_in = 1
    for c in (b, 2 * b, 4 * b):
        layers += [ConvBNReLU3d(c_in, c, batch_norm=batch_norm), ConvBNReLU3d(c, c, batch_norm=batch_norm)]
        layers.append(nn.MaxPool3d(2, stride=2))
        c_in = c
    return nn.Sequential(*layers)


class DSRF3Dv2(nn.Module):
    """DSRF3D-v2 3-D VGG classifier; ``forward`` gives ``logits (n, C)`` and ``features (n, fc_units)``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.name != "dsrf3d-v2":
            raise ValueError(f"DSRF3Dv2 cannot build {config.name!r}; use build_model")
        assert config.n_classes is not None
        self.config = config
        b = config.base_channels
        self.encoder = vgg_encoder(b, config.batch_norm)
        d, h, w = config.input_zyx
        n_flat = 4 * b * (d // 8) * (h // 8) * (w // 8)
        self.classifier = ClassifierHead(n_flat, config.fc_units, config.n_classes, config.dropout, n_hidden=2)
        init_weights(self)

    def forward(self, x: Tensor) -> ModelOutput:
        """``(n, 1, d, h, w)`` with ``(d, h, w) == config.input_zyx`` -> logits and features."""
        check_input(x, self.config.input_zyx)
        logits, features = self.classifier(torch.flatten(self.encoder(x), 1))
        return ModelOutput(logits=logits, features=features)


class SSN3DED(nn.Module):
    """SSN3D-ED 3-D VGG encoder-decoder segmenter; ``forward`` gives ``seg_logits (n, 2, d, h, w)``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.name != "ssn3d-ed":
            raise ValueError(f"SSN3DED cannot build {config.name!r}; use build_model")
        self.config = config
        b, bn = config.base_channels, config.batch_norm
        self.encoder = vgg_encoder(b, bn)
        stages: list[nn.Module] = []
        for c_in, c_out in ((4 * b, 2 * b), (2 * b, b), (b, b)):
            stages += [DeconvBNReLU3d(c_in, c_out, bn), ConvBNReLU3d(c_out, c_out, batch_norm=bn)]
        self.decoder = nn.Sequential(*stages)
        self.seg_head = nn.Conv3d(b, 2, 1)
        init_weights(self)

    def forward(self, x: Tensor) -> ModelOutput:
        """``(n, 1, d, h, w)`` (sides multiples of 8) -> ``seg_logits (n, 2, d, h, w)``."""
        check_input(x)
        return ModelOutput(seg_logits=self.seg_head(self.decoder(self.encoder(x))))

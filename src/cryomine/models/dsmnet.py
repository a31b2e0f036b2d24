"""DSM-Net: multi-task classification, segmentation and coarse structure recovery of subtomograms.

Liu, Zeng, Wang, Guo, Xu, "Multi-task Learning for Macromolecule Classification, Segmentation and Coarse
Structural Recovery in Cryo-Tomography", BMVC 2018. One class builds the full network and all its variants; the
heads present follow ``ModelConfig.name`` (``dsmnet`` = Cls+Seg+Rec, ``cls``, ``seg``, ``cls+rec``, ``cls+seg``).

Architecture (b = ``base_channels`` = 32; every 3x3x3 conv / deconv is followed by batch norm and ReLU; residual
blocks are two 3x3x3 convs with an identity shortcut, ReLU after the sum). Shapes for a 40^3 input, as
``channels x d^3``:

==========================================  ==================  ======================================
layer                                       output              note
==========================================  ==================  ======================================
input                                       1 x 40^3
stem: conv 3x3x3                            32 x 40^3
max pool 2, stride 2                        32 x 20^3
res block 1                                 32 x 20^3           -> skip s1
conv 3x3x3 stride 2                         64 x 10^3
res block 2                                 64 x 10^3           -> skip s2
conv 3x3x3 stride 2                         128 x 5^3
res block 3                                 128 x 5^3           backbone output
---- classification subnet (cls) ----
global average pool                         128                 pool to 1^3 (see below)
FC + ReLU                                   1024                ``features``
dropout 0.7, FC                             C                   ``logits`` (softmax in the loss)
---- shared decoder (seg and/or rec) ----
deconv 3x3x3 stride 2, + s2                 64 x 10^3           skip *added*
deconv 3x3x3 stride 2, + s1                 32 x 20^3           skip *added*
res block 4                                 32 x 20^3
deconv 3x3x3 stride 2                       32 x 40^3
seg head: conv 1x1x1                        2 x 40^3            ``seg_logits`` (voxel softmax in loss)
rec head: conv 1x1x1                        1 x 40^3            ``recon`` (linear, MSE loss)
==========================================  ==================  ======================================

Choices where the paper is silent:

* Batch norm after every 3x3x3 conv/deconv (``batch_norm=False`` gives biased convs instead).
* The average pooling is *global* (to 1^3). With it DSM-Net at C=22 has **1,954,457** parameters (about the
  paper's ~2 M); pooling to 2^3 would put 1 M weights in the FC layer alone (~2.9 M total).
  Global pooling also makes the network accept any input size whose sides are multiples of 8.
* Skip connections are *added* (not concatenated) to the outputs of the first two deconvolutions, at the d/4 and
  d/2 scales; this keeps channel counts, and therefore the parameter count, unchanged.
* The last deconvolution keeps b = 32 channels; the segmentation (2-channel) and recovery (1-channel) 1x1x1
  convs on it are stored as one 1x1x1 conv ``heads`` with 3 output channels (identical maths, one pass over the
  largest feature map); ``seg_logits`` and ``recon`` are channel slices (views) of its output.
* ``features`` is the 1024-unit FC layer after its ReLU and before dropout.

Parameters / forward GFLOP per 40^3 subtomogram at C=22: dsmnet 1,954,457 / 3.33; cls 1,594,550 / 1.83;
seg 1,799,778 / 3.33; cls+rec 1,954,391 / 3.32; cls+seg 1,954,424 / 3.33.

The forward pass applies no softmax; use :meth:`ModelOutput.class_proba` / :meth:`ModelOutput.seg_proba`.
Everything runs under ``torch.autocast("cpu", dtype=torch.bfloat16)`` and in ``channels_last_3d``. One caveat
(torch 2.13 / oneDNN, AVX512-BF16 CPU): bf16 *weight gradients* of the 3x3x3 convs on 2^3 maps are wrong, so train
inputs of 16^3 or smaller in fp32 on CPU; forward passes, and training at 24^3 and up, are fine.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cryomine.models.blocks import (
    ClassifierHead,
    ConvBNReLU3d,
    DeconvBNReLU3d,
    ModelOutput,
    ResidualBlock3d,
    check_input,
    init_weights,
)
from cryomine.models.config import DSMNET_NAMES, ModelConfig


class DSMNet(nn.Module):
    """DSM-Net and its single/dual-task variants; heads chosen by ``config.name``.

    ``forward(x)`` maps ``(n, 1, d, h, w)`` subtomograms (each side a multiple of 8) to a :class:`ModelOutput`
    with ``logits (n, C)`` and ``features (n, fc_units)`` if the model classifies, ``seg_logits (n, 2, d, h, w)``
    if it segments and ``recon (n, 1, d, h, w)`` if it recovers structure; absent heads are ``None``.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.name not in DSMNET_NAMES:
            raise ValueError(f"DSMNet cannot build {config.name!r}; use build_model")
        self.config = config
        b, bn = config.base_channels, config.batch_norm
        # backbone
        self.stem = ConvBNReLU3d(1, b, batch_norm=bn)
        self.pool = nn.MaxPool3d(2, stride=2)
        self.res1 = ResidualBlock3d(b, bn)
        self.down1 = ConvBNReLU3d(b, 2 * b, stride=2, batch_norm=bn)
        self.res2 = ResidualBlock3d(2 * b, bn)
        self.down2 = ConvBNReLU3d(2 * b, 4 * b, stride=2, batch_norm=bn)
        self.res3 = ResidualBlock3d(4 * b, bn)
        # classification subnet
        self.classifier: ClassifierHead | None = None
        if config.has_cls:
            assert config.n_classes is not None
            self.avgpool = nn.AdaptiveAvgPool3d(1)
            self.classifier = ClassifierHead(4 * b, config.fc_units, config.n_classes, config.dropout)
        # shared decoder
        self.has_decoder = config.has_seg or config.has_rec
        if self.has_decoder:
            self.up1 = DeconvBNReLU3d(4 * b, 2 * b, bn)
            self.up2 = DeconvBNReLU3d(2 * b, b, bn)
            self.res4 = ResidualBlock3d(b, bn)
            self.up3 = DeconvBNReLU3d(b, b, bn)
            # the seg (2 channels) and rec (1 channel) 1x1x1 convs, stacked into one conv so the 40^3 feature
            # map is read once; output channels [0, 1] = seg logits, [2] (or [0] without seg) = recon.
            self.n_seg = 2 if config.has_seg else 0
            self.heads = nn.Conv3d(b, self.n_seg + int(config.has_rec), 1)
        init_weights(self)

    def forward(self, x: Tensor) -> ModelOutput:
        """``(n, 1, d, h, w)`` subtomograms -> :class:`ModelOutput` (see the class docstring)."""
        check_input(x)
        s1 = self.res1(self.pool(self.stem(x)))  # (n, b, d/2, ...)
        s2 = self.res2(self.down1(s1))  # (n, 2b, d/4, ...)
        s3 = self.res3(self.down2(s2))  # (n, 4b, d/8, ...)

        logits = features = None
        if self.classifier is not None:
            logits, features = self.classifier(torch.flatten(self.avgpool(s3), 1))

        seg = rec = None
        if self.has_decoder:
            y = self.up1(s3) + s2
            y = self.up2(y) + s1
            out = self.heads(self.up3(self.res4(y)))  # (n, 2 and/or 1, d, h, w)
            if self.config.has_seg:
                seg = out[:, : self.n_seg]
            if self.config.has_rec:
                rec = out[:, self.n_seg :]
        return ModelOutput(logits=logits, seg_logits=seg, recon=rec, features=features)

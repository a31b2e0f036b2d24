"""The learned picker: a 3-D U-Net that labels every voxel of a tomogram with a class (0 = background).

Why a U-Net (Ronneberger et al. 2015; 3-D: Çiçek et al. 2016), as DeepFinder and the CZII challenge winners use:
picking needs a label at full resolution (to separate neighbours in a crowded cell) and context as wide as the
largest complex (a ribosome is ~30 voxels across at 10 Å). An encoder-decoder with skip connections gives both:
``depth`` stride-2 levels widen the receptive field, the skips carry the boundaries back. DSM-Net's own
encoder-decoder works on one 40³ box with a global classifier; here the same blocks
(:class:`~cryomine.models.blocks.ConvBNReLU3d`, :class:`~cryomine.models.blocks.DeconvBNReLU3d`) are arranged
fully convolutionally, so the network runs on tiles of any size that is a multiple of ``2 ** depth``.

Levels: ``base_channels * 2 ** l`` channels at level ``l``; two 3x3x3 conv-BN-ReLU per level; a stride-2 conv
down; a stride-2 transposed conv up, concatenated with the skip; a 1x1x1 conv to ``n_labels`` logits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from cryomine.errors import InputError
from cryomine.models.blocks import ConvBNReLU3d, DeconvBNReLU3d, init_weights

__all__ = ["PickerConfig", "PickerUNet", "receptive_radius"]


@dataclass(frozen=True)
class PickerConfig:
    """A picker network: ``class_names`` (label ``i + 1`` is ``class_names[i]``; label 0 background; a class
    may be ``"membrane"``), ``base_channels`` at full resolution, ``depth`` stride-2 levels."""

    class_names: tuple[str, ...]
    base_channels: int = 16
    depth: int = 3

    def __post_init__(self) -> None:
        names = tuple(str(n) for n in self.class_names)
        if not names or len(set(names)) != len(names) or any(not n.strip() or any(c.isspace() for c in n) for n in names):
            raise InputError(f"class names must be distinct single words, got {list(self.class_names)!r}", "class_names")
        if len(names) > 126:
            raise InputError(f"at most 126 classes (int8 label maps), got {len(names)}", "class_names")
        object.__setattr__(self, "class_names", names)
        for value, name, lo, hi in ((self.base_channels, "base_channels", 1, 256), (self.depth, "depth", 1, 5)):
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise InputError(f"must be an integer in [{lo}, {hi}], got {value!r}", name)

    @property
    def n_labels(self) -> int:
        """Output channels: background plus every class."""
        return len(self.class_names) + 1

    @property
    def multiple(self) -> int:
        """Tile edges must be multiples of this (``2 ** depth``)."""
        return 2**self.depth

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["class_names"] = list(self.class_names)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PickerConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise InputError(f"unknown picker config keys {sorted(unknown)}")
        return cls(**{**d, "class_names": tuple(d.get("class_names", ()))})


def receptive_radius(config: PickerConfig) -> int:
    """How far (voxels) an output voxel's inputs reach: tiles overlapping by at least this give exactly the
    untiled result. Each 3x3x3 conv at level ``l`` reaches ``2 ** l``; each down/up step ``2 ** l`` more."""
    r = 0
    for level in range(config.depth + 1):
        convs = 2 if level == config.depth else 4  # two in the encoder, two in the decoder (the bottom: two)
        r += convs * 2**level
        if level < config.depth:
            r += 2 * 2**level  # the stride-2 conv down and the transposed conv up
    return r


class PickerUNet(nn.Module):
    """``(n, 1, d, h, w)`` standardised tomogram tiles (each edge a multiple of ``config.multiple``) ->
    ``(n, n_labels, d, h, w)`` logits."""

    def __init__(self, config: PickerConfig) -> None:
        super().__init__()
        self.config = config
        c = [config.base_channels * 2**level for level in range(config.depth + 1)]
        self.enc = nn.ModuleList([nn.Sequential(ConvBNReLU3d(1 if i == 0 else c[i], c[i]), ConvBNReLU3d(c[i], c[i])) for i in range(config.depth)])
        self.down = nn.ModuleList([ConvBNReLU3d(c[i], c[i + 1], stride=2) for i in range(config.depth)])
        self.bottom = nn.Sequential(ConvBNReLU3d(c[-1], c[-1]), ConvBNReLU3d(c[-1], c[-1]))
        self.up = nn.ModuleList([DeconvBNReLU3d(c[i + 1], c[i]) for i in range(config.depth)])
        self.dec = nn.ModuleList([nn.Sequential(ConvBNReLU3d(2 * c[i], c[i]), ConvBNReLU3d(c[i], c[i])) for i in range(config.depth)])
        self.head = nn.Conv3d(c[0], config.n_labels, 1)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 5 or x.shape[1] != 1:
            raise InputError(f"picker input must be (n, 1, d, h, w), got {tuple(x.shape)}")
        if any(s % self.config.multiple for s in x.shape[2:]):
            raise InputError(f"tile edges must be multiples of {self.config.multiple}, got {tuple(x.shape[2:])}")
        skips = []
        for enc, down in zip(self.enc, self.down):
            x = enc(x)
            skips.append(x)
            x = down(x)
        x = self.bottom(x)
        for i in reversed(range(self.config.depth)):
            x = self.dec[i](torch.cat([self.up[i](x), skips[i]], dim=1))
        return self.head(x)

"""Model configuration: which architecture, which heads, how big (built by :func:`cryomine.models.build.build_model`).

Variants of DSM-Net are chosen by configuration (the enabled heads), not by subclasses:

============  ====  ====  ====  ==========================================================
name          cls   seg   rec   network
============  ====  ====  ====  ==========================================================
dsmnet        yes   yes   yes   full DSM-Net (Liu et al., BMVC 2018)
cls           yes   -     -     DSM-Net backbone + classification subnet (no decoder)
seg           -     yes   -     DSM-Net backbone + decoder + segmentation head
cls+rec       yes   -     yes   classification + structure recovery (needs the decoder)
cls+seg       yes   yes   -     classification + segmentation
ssn3d-ed      -     yes   -     3-D VGG encoder-decoder segmentation baseline (Liu et al. 2018)
dsrf3d-v2     yes   -     -     3-D VGG classifier baseline (Che et al. 2017)
============  ====  ====  ====  ==========================================================
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryomine.errors import InputError, check_int

#: name -> (has_cls, has_seg, has_rec)
_HEADS: dict[str, tuple[bool, bool, bool]] = {
    "dsmnet": (True, True, True),
    "cls": (True, False, False),
    "seg": (False, True, False),
    "cls+rec": (True, False, True),
    "cls+seg": (True, True, False),
    "ssn3d-ed": (False, True, False),
    "dsrf3d-v2": (True, False, False),
}
MODEL_NAMES: tuple[str, ...] = tuple(_HEADS)
#: The names built by :class:`cryomine.models.dsmnet.DSMNet`.
DSMNET_NAMES: tuple[str, ...] = ("dsmnet", "cls", "seg", "cls+rec", "cls+seg")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class ModelConfig:
    """Frozen, validated description of one network.

    Attributes:
        name: one of :data:`MODEL_NAMES` (case-insensitive; stored lower-case).
        n_classes: number of classes C (>= 2) for models with a classifier; ignored (may be ``None``) otherwise.
        input_size: subtomogram size, an int ``s`` for ``(s, s, s)`` or a ``(d, h, w)`` triple; each a positive
            multiple of 8. DSM-Net variants and SSN3D-ED accept any such size at run time (global average pooling /
            fully convolutional); DSRF3D-v2 flattens its last feature map, so it only accepts this size.
        dropout: dropout probability after each hidden fully connected layer, in [0, 1).
        fc_units: width of the hidden fully connected layer(s) (the ``features`` vector).
        base_channels: channels of the first stage; stages use ``b, 2b, 4b`` (32, 64, 128 by default).
        batch_norm: batch norm after every 3x3x3 convolution / deconvolution (the paper does not say; default on).
    """

    name: str
    n_classes: int | None = None
    input_size: int | tuple[int, int, int] = 40
    dropout: float = 0.7
    fc_units: int = 1024
    base_channels: int = 32
    batch_norm: bool = True

    def __post_init__(self) -> None:
        name = str(self.name).strip().lower() if isinstance(self.name, str) else self.name
        if name not in _HEADS:
            raise InputError(f"model name: unknown model {self.name!r}; choose one of {', '.join(MODEL_NAMES)}")
        object.__setattr__(self, "name", name)

        if self.has_cls:
            if not _is_int(self.n_classes) or self.n_classes < 2:
                raise InputError(
                    f"n_classes: model {name!r} classifies, so it needs an integer >= 2, got {self.n_classes!r}"
                )
        elif self.n_classes is not None and (not _is_int(self.n_classes) or self.n_classes < 2):
            raise InputError(f"n_classes: must be None or an integer >= 2, got {self.n_classes!r}")

        size = self.input_size
        if isinstance(size, (list, tuple)):
            size = tuple(size)
            if len(size) == 1:
                size = size[0]
        if isinstance(size, tuple):
            if len(size) != 3 or not all(_is_int(s) for s in size):
                raise InputError(f"input_size: must be an int or a (d, h, w) triple of ints, got {self.input_size!r}")
        elif not _is_int(size):
            raise InputError(f"input_size: must be an int or a (d, h, w) triple of ints, got {self.input_size!r}")
        sizes = size if isinstance(size, tuple) else (size,)
        if any(s < 8 or s % 8 for s in sizes):
            raise InputError(
                f"input_size: every dimension must be a positive multiple of 8 "
                f"(three stride-2 reductions), got {self.input_size!r}"
            )
        if isinstance(size, tuple) and len(set(size)) == 1:
            size = size[0]
        object.__setattr__(self, "input_size", size)

        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise InputError(f"dropout: must be a probability in [0, 1), got {self.dropout!r}")
        object.__setattr__(self, "dropout", float(self.dropout))
        for key, high in (("fc_units", 1_000_000), ("base_channels", 4096)):  # beyond: no machine holds the weights
            check_int(getattr(self, key), key, 1, high)
        if not isinstance(self.batch_norm, bool):
            raise InputError(f"batch_norm: must be true or false, got {self.batch_norm!r}")

    @property
    def has_cls(self) -> bool:
        """Whether the model has a classification head (``logits`` and ``features``)."""
        return _HEADS[self.name][0]

    @property
    def has_seg(self) -> bool:
        """Whether the model has a segmentation head (``seg_logits``)."""
        return _HEADS[self.name][1]

    @property
    def has_rec(self) -> bool:
        """Whether the model has a structure-recovery head (``recon``)."""
        return _HEADS[self.name][2]

    @property
    def input_zyx(self) -> tuple[int, int, int]:
        """The input size as a ``(d, h, w)`` triple."""
        s = self.input_size
        return (s, s, s) if isinstance(s, int) else tuple(s)  # type: ignore[return-value]

    def replace(self, **changes: Any) -> ModelConfig:
        """Validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (tuples become lists); inverse of :meth:`from_dict`."""
        d = dataclasses.asdict(self)
        if isinstance(d["input_size"], tuple):
            d["input_size"] = list(d["input_size"])
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Build (and validate) a config from :meth:`to_dict` output, e.g. read back from JSON."""
        if not isinstance(data, Mapping):
            raise InputError(f"model config must be a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"model config: unknown key(s) {', '.join(map(repr, unknown))}")
        if "name" not in data:
            raise InputError("model config: missing required key 'name'")
        return cls(**dict(data))

"""Randomised imaging and scene parameters: each simulated batch under its own defocus and tilt range, each box
with its own crowding.

A user's data is not one preset: defocus, the tilt range (often asymmetric, e.g. -54..+42 on a lamella) and the
SNR vary between tomograms. :class:`ImagingVariation` draws, per batch of a simulated dataset, a defocus
uniformly in ``defocus_um`` and a tilt range with ``min`` uniform in ``tilt_min_deg`` and ``max`` uniform in
``tilt_max_deg``, both rounded to whole multiples of the dataset's tilt step (so geometries repeat and the
projector matrices are reused). A batch shares one imaging geometry: it is one noise group of the dataset
(:mod:`cryomine.io.subtomo_h5`), and each row records its tilt range and defocus. (The SNR is varied at training
time instead, by fresh noise at a drawn SNR: :class:`cryomine.data.augment.AugmentConfig`.) How crowded a
sample is varies too, from isolated molecules in vitro to a crowded cytosol: with ``crowding`` each subtomogram
``i`` packs its neighbourhood to a volume fraction drawn uniformly in that range from ``default_rng([seed, 4, i])``
(:meth:`ImagingVariation.crowding_of`), a stream of its own, so the scenes of datasets made without it are
unchanged.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from cryomine.errors import InputError
from cryomine.simulate.imaging import ImagingConfig
from cryomine.simulate.scene import MAX_VOLUME_FRACTION, CrowdingConfig
from cryomine.simulate.tilt import TiltSeriesConfig

Range = tuple[float, float]


def _range(name: str, value: Any, low: float, high: float) -> Range | None:
    if value is None:
        return None
    r = tuple(value) if isinstance(value, (list, tuple)) else ()
    ok = len(r) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in r)
    if not ok or r[0] > r[1] or r[0] < low or r[1] > high:
        raise InputError(f"{name}: need two numbers LOW,HIGH with {low:g} <= LOW <= HIGH <= {high:g}, got {value!r}",
                         f"--vary-{name.replace('_deg', '').replace('_um', '').replace('_', '-')}")
    return float(r[0]), float(r[1])


@dataclass(frozen=True)
class ImagingVariation:
    """Ranges the imaging parameters are drawn from per batch, and the crowding per box (``None`` = the
    dataset's fixed value).

    Attributes:
        defocus_um: ``(low, high)`` defocus in µm (positive = underfocus).
        tilt_min_deg: ``(low, high)`` of the lowest tilt, degrees (e.g. ``(-66, -45)``).
        tilt_max_deg: ``(low, high)`` of the highest tilt, degrees (e.g. ``(39, 66)``).
        crowding: ``(low, high)`` volume fraction of each box covered by molecules (0 = the target alone).
    """

    defocus_um: Range | None = None
    tilt_min_deg: Range | None = None
    tilt_max_deg: Range | None = None
    crowding: Range | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "defocus_um", _range("defocus_um", self.defocus_um, -100.0, 100.0))
        object.__setattr__(self, "tilt_min_deg", _range("tilt_min_deg", self.tilt_min_deg, -90.0, 90.0))
        object.__setattr__(self, "tilt_max_deg", _range("tilt_max_deg", self.tilt_max_deg, -90.0, 90.0))
        object.__setattr__(self, "crowding", _range("crowding", self.crowding, 0.0, MAX_VOLUME_FRACTION))
        if self.crowding is not None and self.crowding[1] >= MAX_VOLUME_FRACTION:
            raise InputError(f"crowding: the highest volume fraction must be below {MAX_VOLUME_FRACTION:g}, got "
                             f"{self.crowding[1]:g}", "--vary-crowding")
        if self.tilt_min_deg and self.tilt_max_deg and self.tilt_min_deg[1] >= self.tilt_max_deg[0]:
            raise InputError(f"tilt ranges overlap: the highest minimum {self.tilt_min_deg[1]:g} must be below the "
                             f"lowest maximum {self.tilt_max_deg[0]:g}", "--vary-tilt-min/--vary-tilt-max")

    @property
    def active(self) -> bool:
        """Whether anything varies."""
        return any(v is not None for v in (self.defocus_um, self.tilt_min_deg, self.tilt_max_deg, self.crowding))

    @property
    def varies_imaging(self) -> bool:
        """Whether an imaging parameter (defocus, tilt range) varies from batch to batch."""
        return any(v is not None for v in (self.defocus_um, self.tilt_min_deg, self.tilt_max_deg))

    def crowding_of(self, base: CrowdingConfig, seed: int, index: int) -> CrowdingConfig:
        """Subtomogram ``index``'s crowding: ``base``, with its volume fraction drawn from ``default_rng([seed, 4,
        index])`` when ``crowding`` varies."""
        if self.crowding is None:
            return base
        fraction = float(np.random.default_rng([seed, 4, index]).uniform(*self.crowding))
        return dataclasses.replace(base, volume_fraction=fraction)

    def draw(self, base: ImagingConfig, rng: np.random.Generator) -> ImagingConfig:
        """One batch's imaging config: ``base`` with the varied parameters drawn from ``rng``."""
        tilt, mic = base.tilt, base.microscope
        step = tilt.step_deg
        lo, hi = tilt.min_deg, tilt.max_deg
        if self.tilt_min_deg is not None:
            lo = step * round(rng.uniform(*self.tilt_min_deg) / step)
        if self.tilt_max_deg is not None:
            hi = step * round(rng.uniform(*self.tilt_max_deg) / step)
        if self.defocus_um is not None:
            mic = dataclasses.replace(mic, defocus_um=float(rng.uniform(*self.defocus_um)))
        if lo >= hi:
            raise InputError(f"drawn tilt range [{lo:g}, {hi:g}] is empty; give ranges further apart", "--vary-tilt-min")
        return dataclasses.replace(base, tilt=TiltSeriesConfig(float(lo), float(hi), step), microscope=mic)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (ranges as lists); inverse of :meth:`from_dict`. ``crowding`` is left out when it does not
        vary, as in datasets made before it existed."""
        d = {k: (None if v is None else list(v)) for k, v in dataclasses.asdict(self).items()}
        if d["crowding"] is None:
            d.pop("crowding")
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> ImagingVariation:
        """From :meth:`to_dict` output (``None`` = nothing varies)."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping) or set(data) - {f.name for f in dataclasses.fields(cls)}:
            raise InputError(f"imaging variation: expected keys defocus_um, tilt_min_deg, tilt_max_deg, crowding, got {data!r}")
        return cls(**{k: (None if v is None else tuple(v)) for k, v in data.items()})


def parse_range(text: str | None, option: str) -> Range | None:
    """``"LOW,HIGH"`` -> two floats (``None`` passes through)."""
    if text is None:
        return None
    try:
        lo, hi = (float(v) for v in str(text).split(","))
    except ValueError:
        raise InputError(f"expected LOW,HIGH (two numbers), got {text!r}", option) from None
    return lo, hi

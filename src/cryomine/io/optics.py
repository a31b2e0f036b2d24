"""RELION optics groups: the ``data_optics`` block that a RELION 3.1+ / 5 particles file must carry.

Every particles file cryomine writes has a ``data_optics`` table with at least ``rlnOpticsGroup``,
``rlnOpticsGroupName`` and ``rlnImagePixelSize`` (Å per voxel of the particles' ``rlnCoordinateX/Y/Z``), plus
``rlnTomoTiltSeriesPixelSize`` (Å, the unbinned tilt series), ``rlnVoltage`` (kV), ``rlnSphericalAberration``
(mm) and ``rlnAmplitudeContrast`` when they are known; each particle names its group in ``rlnOpticsGroup``.
RELION 5's tomography programs need ``rlnTomoTiltSeriesPixelSize`` in this table; it is written only when the
writer knows it (a tomogram's voxel size is the tilt series' pixel size times an unknown binning).

This module works on pandas tables only; :func:`cryomine.io.star.with_optics` applies it to a ParticleTable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cryomine.errors import InputError

__all__ = ["OPTICS_GROUP", "OpticsGroup", "assign_optics_groups", "merge_optics"]

OPTICS_GROUP = "rlnOpticsGroup"
OPTICS_GROUP_NAME = "rlnOpticsGroupName"
PIXEL_SIZE = "rlnImagePixelSize"
_TOLERANCE = 1e-6  # relative: values written with 10 significant digits read back equal


@dataclass(frozen=True)
class OpticsGroup:
    """One optics group. ``pixel_size_a``: Å per voxel of the particle coordinates (``rlnImagePixelSize``);
    ``tilt_series_pixel_size_a``: Å per pixel of the unbinned tilt series (``rlnTomoTiltSeriesPixelSize``);
    ``voltage_kv`` (``rlnVoltage``), ``cs_mm`` (``rlnSphericalAberration``), ``amplitude_contrast``
    (``rlnAmplitudeContrast``, in [0, 1)); None = unknown, not written. ``name``: ``rlnOpticsGroupName``."""

    pixel_size_a: float
    tilt_series_pixel_size_a: float | None = None
    voltage_kv: float | None = None
    cs_mm: float | None = None
    amplitude_contrast: float | None = None
    name: str = "opticsGroup1"

    def __post_init__(self) -> None:
        _positive(self.pixel_size_a, "pixel_size_a")
        if self.tilt_series_pixel_size_a is not None:
            _positive(self.tilt_series_pixel_size_a, "tilt_series_pixel_size_a")
        if self.voltage_kv is not None:
            _positive(self.voltage_kv, "voltage_kv")
        if self.cs_mm is not None and not (_finite(self.cs_mm, "cs_mm") >= 0):
            raise InputError(f"cs_mm must be >= 0 mm, got {self.cs_mm!r}")
        if self.amplitude_contrast is not None and not 0 <= _finite(self.amplitude_contrast, "amplitude_contrast") < 1:
            raise InputError(f"amplitude_contrast must be in [0, 1), got {self.amplitude_contrast!r}")
        if not isinstance(self.name, str) or not self.name or any(c.isspace() for c in self.name):
            raise InputError(f"optics group name must be a non-empty word without spaces, got {self.name!r}")

    def columns(self) -> dict[str, float]:
        """The known physical values by RELION label (group number and name excluded)."""
        values = {
            PIXEL_SIZE: self.pixel_size_a,
            "rlnTomoTiltSeriesPixelSize": self.tilt_series_pixel_size_a,
            "rlnVoltage": self.voltage_kv,
            "rlnSphericalAberration": self.cs_mm,
            "rlnAmplitudeContrast": self.amplitude_contrast,
        }
        return {k: float(v) for k, v in values.items() if v is not None}

    def table(self, number: int = 1) -> pd.DataFrame:
        """This group as a one-row ``data_optics`` table with group ``number``."""
        return pd.DataFrame([{OPTICS_GROUP: int(number), OPTICS_GROUP_NAME: self.name, **self.columns()}])


def merge_optics(optics: pd.DataFrame | None, given: OpticsGroup | None, source: object = None) -> pd.DataFrame:
    """A complete optics table: ``optics`` (may be None) with ``given``'s values filled in.

    Columns missing from ``optics`` are added with ``given``'s value for every group; a value present in both
    must agree (relative 1e-6), else :class:`InputError` (e.g. a table at 12 Å written with ``pixel_size_a=10``).
    Missing ``rlnOpticsGroup`` (1..n) and ``rlnOpticsGroupName`` (``opticsGroup<n>``) are added. Raises
    :class:`InputError` naming ``source`` when the pixel size stays unknown or groups or pixel sizes are invalid.
    """
    if optics is None or len(optics) == 0:
        if given is None:
            raise InputError("pixel size unknown: a particles file needs data_optics with rlnImagePixelSize; "
                             "pass pixel_size_a (Å per voxel of the coordinates)", source)  # fmt: skip
        return given.table()
    out = optics.copy()
    for label, value in (given.columns() if given is not None else {}).items():
        if label not in out.columns:
            out[label] = value
            continue
        have = pd.to_numeric(out[label], errors="coerce").to_numpy(dtype=np.float64)
        if not np.allclose(have, value, rtol=_TOLERANCE, atol=0.0):
            raise InputError(f"{label} is {have.tolist()} in the optics table, but {value:g} was given", source)
    if PIXEL_SIZE not in out.columns:
        raise InputError("pixel size unknown: the optics table has no rlnImagePixelSize; pass pixel_size_a", source)
    if OPTICS_GROUP not in out.columns:
        out.insert(0, OPTICS_GROUP, np.arange(1, len(out) + 1))
    groups = pd.to_numeric(out[OPTICS_GROUP], errors="coerce").to_numpy(dtype=np.float64)
    if not (np.isfinite(groups).all() and (groups == np.round(groups)).all() and (groups >= 1).all()):
        raise InputError(f"rlnOpticsGroup must hold integers >= 1, got {out[OPTICS_GROUP].tolist()}", source)
    if len(set(groups)) != len(groups):
        raise InputError(f"rlnOpticsGroup numbers repeat: {out[OPTICS_GROUP].tolist()}", source)
    out[OPTICS_GROUP] = groups.astype(np.int64)
    if OPTICS_GROUP_NAME not in out.columns:
        out.insert(1, OPTICS_GROUP_NAME, [f"opticsGroup{g}" for g in out[OPTICS_GROUP]])
    pixel = pd.to_numeric(out[PIXEL_SIZE], errors="coerce").to_numpy(dtype=np.float64)
    if not (np.isfinite(pixel) & (pixel > 0)).all():
        raise InputError(f"rlnImagePixelSize must be > 0 Å, got {out[PIXEL_SIZE].tolist()}", source)
    return out


def assign_optics_groups(particles: pd.DataFrame, optics: pd.DataFrame, source: object = None) -> pd.DataFrame:
    """``particles`` with ``rlnOpticsGroup`` (all in group ``optics``'s only group when absent); InputError
    when it is absent and there are several groups, or names groups that ``optics`` lacks."""
    known = {int(g) for g in optics[OPTICS_GROUP]}
    if OPTICS_GROUP not in particles.columns:
        if len(known) != 1:
            raise InputError(f"particles lack rlnOpticsGroup and the optics table has {len(known)} groups", source)
        out = particles.copy()
        out[OPTICS_GROUP] = np.full(len(out), next(iter(known)), dtype=np.int64)
        return out
    groups = pd.to_numeric(particles[OPTICS_GROUP], errors="coerce").to_numpy(dtype=np.float64)
    unknown = sorted({str(g) for g in groups if not (math.isfinite(g) and int(g) == g and int(g) in known)})
    if unknown:
        raise InputError(f"particles name optics groups missing from data_optics: {unknown[:5]}", source)
    return particles


def _finite(value: object, name: str) -> float:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise InputError(f"{name} must be finite, got {value!r}")
    return v


def _positive(value: object, name: str) -> float:
    v = _finite(value, name)
    if v <= 0:
        raise InputError(f"{name} must be > 0, got {v:g}")
    return v

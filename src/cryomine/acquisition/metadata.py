"""Acquisition metadata of a tomogram: one validated object that travels from the tomogram to the average.

:class:`Acquisition` holds what the data's own metadata (or the user's flags) say about how a tomogram was
recorded; every field may be unknown (``None``), and nothing is ever filled in silently:

- ``voxel_size_a``: the tomogram's voxel size (Å);
- ``tilt_angles_deg``: the tilt angles (degrees, tilt axis y; at tilt ``theta`` the beam runs along
  ``(z, x) = (cos theta, sin theta)`` of the tomogram: the negative of RELION's ``rlnTomoYTilt`` and IMOD's
  ``.tlt``, converted by the readers), in the order the source lists them;
  ``tilt_range_deg``: ``(min, max)`` of the tilts, derived from the angles when they are known;
- ``defocus_um``: per-tilt defocus (µm, positive = underfocus) in the order of ``tilt_angles_deg``, or one value
  for the whole tomogram;
- ``dose_e_a2``: per-tilt cumulative (pre-)exposure (e/Å²), order of ``tilt_angles_deg``;
- ``voltage_kv``, ``cs_mm``, ``amplitude_contrast``: the optics;
- ``polarity``: ``"bright"`` (protein brighter than solvent: cryomine's working convention, what DSM-Net and the
  pickers expect) or ``"dark"`` (protein dark: most reconstructions of real data, and most templates);
- ``sources``: where the values came from (files, ``flags``), for the record.

Steps that need a field call :meth:`Acquisition.require` (an error naming the field and the flag that gives
it) or :meth:`Acquisition.resolved_tilt_range` / :meth:`Acquisition.microscope`, which warn once
(:class:`MetadataWarning`) when they must assume something.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cryomine.acquisition.ctf import MicroscopeConfig
from cryomine.errors import CryomineWarning, InputError
from cryomine.geometry.tilts import check_tilt_range

__all__ = ["ASSUMED_TILT_RANGE_DEG", "FLAGS", "POLARITIES", "Acquisition", "MetadataWarning"]

POLARITIES = ("bright", "dark")
ASSUMED_TILT_RANGE_DEG = (-60.0, 60.0)

#: The command-line flag that sets each field (named in errors and warnings; the CLI declares them from here).
FLAGS: dict[str, tuple[str, str]] = {
    "voxel_size_a": ("--voxel-size", "Voxel size of the tomogram (Å); overrides the file header and metadata."),
    "tilt_min_deg": ("--tilt-min", "Lowest tilt angle (degrees); overrides the metadata's tilt range (give --tilt-max too)."),
    "tilt_max_deg": ("--tilt-max", "Highest tilt angle (degrees)."),
    "defocus_um": ("--defocus", "Defocus (µm, positive = underfocus) for the CTF; overrides the metadata's."),
    "voltage_kv": ("--voltage", "Acceleration voltage (kV)."),
    "cs_mm": ("--cs", "Spherical aberration (mm)."),
    "amplitude_contrast": ("--amplitude-contrast", "Amplitude contrast (fraction, e.g. 0.07)."),
    "polarity": ("--polarity", "Contrast of protein in the tomogram: bright or dark (dark = invert before use)."),
    "acquisition": ("--acquisition", "Metadata file(s): cryomine tomogram JSON, RELION 5 tomograms.star, IMOD "
                    ".tlt/.rawtlt or ctfplotter .defocus, WarpTools .xml or .tomostar (files beside the tomogram "
                    "with its name are read too)."),
}


class MetadataWarning(CryomineWarning):
    """A step had to assume a value the data's metadata and the flags do not give."""


def _number(name: str, value: Any, lo: float, hi: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}", FLAGS.get(name, (name,))[0]) from None
    if not math.isfinite(v) or not lo <= v <= hi:
        raise InputError(f"{name} must be finite and in [{lo:g}, {hi:g}], got {v:g}", FLAGS.get(name, (name,))[0])
    return v


def _numbers(name: str, values: Any, lo: float, hi: float) -> tuple[float, ...]:
    arr = np.atleast_1d(np.asarray(values, dtype=object)).reshape(-1)
    if arr.size == 0:
        raise InputError(f"{name} is empty", FLAGS.get(name, (name,))[0])
    return tuple(_number(name, v, lo, hi) for v in arr)


@dataclass(frozen=True)
class Acquisition:
    """How a tomogram was recorded (module docstring); ``None`` = unknown."""

    voxel_size_a: float | None = None
    tilt_angles_deg: tuple[float, ...] | None = None
    tilt_range_deg: tuple[float, float] | None = None
    defocus_um: tuple[float, ...] | None = None
    dose_e_a2: tuple[float, ...] | None = None
    voltage_kv: float | None = None
    cs_mm: float | None = None
    amplitude_contrast: float | None = None
    polarity: str | None = None
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        put = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        if self.voxel_size_a is not None:
            v = _number("voxel_size_a", self.voxel_size_a, 0.0, 1e4)
            if v <= 0:
                raise InputError(f"voxel size must be > 0 Å, got {v:g}", "--voxel-size")
            put("voxel_size_a", v)
        if self.tilt_angles_deg is not None:
            angles = _numbers("tilt_angles_deg", self.tilt_angles_deg, -90.0, 90.0)
            put("tilt_angles_deg", angles)
            derived = (min(angles), max(angles))
            if self.tilt_range_deg is None:
                put("tilt_range_deg", derived if derived[0] < derived[1] else None)
        if self.tilt_range_deg is not None:
            put("tilt_range_deg", check_tilt_range(*self.tilt_range_deg, source="--tilt-min/--tilt-max"))
        n = len(self.tilt_angles_deg) if self.tilt_angles_deg is not None else None
        for name, lo, hi in (("defocus_um", -100.0, 100.0), ("dose_e_a2", 0.0, 1e5)):
            value = getattr(self, name)
            if value is not None:
                values = _numbers(name, value, lo, hi)
                if len(values) > 1 and len(values) != n:
                    raise InputError(f"{name} has {len(values)} values for {n if n is not None else 'no'} tilt angles",
                                     FLAGS.get(name, (name,))[0])
                put(name, values)
        for name, lo, hi in (("voltage_kv", 1.0, 5000.0), ("cs_mm", 0.0, 100.0), ("amplitude_contrast", 0.0, 0.999)):
            if getattr(self, name) is not None:
                put(name, _number(name, getattr(self, name), lo, hi))
        if self.polarity is not None and self.polarity not in POLARITIES:
            raise InputError(f"polarity must be one of {', '.join(POLARITIES)}, got {self.polarity!r}", "--polarity")
        put("sources", tuple(str(s) for s in self.sources))

    # ------------------------------------------------------------------ derived values

    @property
    def defocus_at_zero_tilt_um(self) -> float | None:
        """The defocus of the tilt nearest 0° (per-tilt values with angles), the single value, or None."""
        if self.defocus_um is None:
            return None
        if len(self.defocus_um) == 1 or self.tilt_angles_deg is None:
            return float(np.mean(self.defocus_um))
        return self.defocus_um[int(np.argmin(np.abs(self.tilt_angles_deg)))]

    def missing(self, *fields: str) -> list[str]:
        """The names among ``fields`` that are unknown."""
        return [f for f in fields if getattr(self, f) is None]

    def require(self, *fields: str, step: str) -> Acquisition:
        """``self`` when every field is known; else :class:`InputError` naming each missing field and its flag."""
        gaps = self.missing(*fields)
        if gaps:
            named = ", ".join(f"{f} ({FLAGS.get(f, ('',))[0] or 'metadata'})" for f in gaps)
            raise InputError(f"{step} needs {named}: not in the data's metadata ({self.describe_sources()}); "
                             f"give it with the flag or an --acquisition file")
        return self

    def resolved_tilt_range(self, step: str) -> tuple[float, float]:
        """The tilt range, or :data:`ASSUMED_TILT_RANGE_DEG` with one :class:`MetadataWarning` saying so."""
        if self.tilt_range_deg is not None:
            return self.tilt_range_deg
        lo, hi = ASSUMED_TILT_RANGE_DEG
        warnings.warn(f"{step}: tilt range unknown ({self.describe_sources()}); assuming {lo:g}..{hi:g} degrees "
                      f"(give --tilt-min/--tilt-max or an --acquisition file)", MetadataWarning, stacklevel=2)
        return ASSUMED_TILT_RANGE_DEG

    def microscope(self, step: str, **extra: Any) -> MicroscopeConfig | None:
        """The optics as a :class:`MicroscopeConfig` (``extra``: its other fields), or None without a defocus
        (then the step cannot model the CTF: warned). Unknown voltage / Cs / amplitude contrast take the
        :class:`MicroscopeConfig` defaults, each named in one warning."""
        dz = self.defocus_at_zero_tilt_um
        if dz is None:
            warnings.warn(f"{step}: defocus unknown ({self.describe_sources()}); the CTF is not modelled "
                          f"(give --defocus or an --acquisition file)", MetadataWarning, stacklevel=2)
            return None
        known = {k: getattr(self, k) for k in ("voltage_kv", "cs_mm", "amplitude_contrast") if getattr(self, k) is not None}
        assumed = [f"{k} = {getattr(MicroscopeConfig, k):g}" for k in ("voltage_kv", "cs_mm", "amplitude_contrast") if k not in known]
        if assumed:
            warnings.warn(f"{step}: {', '.join(assumed)} assumed (not in the metadata; flags "
                          f"{', '.join(FLAGS[k.split(' ')[0]][0] for k in assumed)})", MetadataWarning, stacklevel=2)
        return MicroscopeConfig(defocus_um=dz, **known, **extra)

    def describe_sources(self) -> str:
        return "read from " + ", ".join(self.sources) if self.sources else "no metadata found"

    # ------------------------------------------------------------------ combining

    def updated(self, source: str = "flags", **values: Any) -> Acquisition:
        """A copy with the non-None ``values`` replacing fields. ``tilt_min_deg`` + ``tilt_max_deg`` set the range
        (known tilt angles are kept; the given range is the one used); ``source`` is added to ``sources``."""
        given = {k: v for k, v in values.items() if v is not None}
        lo, hi = given.pop("tilt_min_deg", None), given.pop("tilt_max_deg", None)
        if (lo is None) != (hi is None):
            raise InputError("give both --tilt-min and --tilt-max (or neither)", "--tilt-min/--tilt-max")
        if lo is not None:
            given["tilt_range_deg"] = (lo, hi)
        if "defocus_um" in given and np.ndim(given["defocus_um"]) == 0:
            given["defocus_um"] = (given["defocus_um"],)
        unknown = set(given) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise InputError(f"unknown acquisition field(s) {sorted(unknown)}")
        if not given:
            return self
        return dataclasses.replace(self, **given, sources=self.sources + (source,))

    def merged(self, other: Acquisition) -> Acquisition:
        """Fields of ``self``, with the unknown ones taken from ``other`` (``self`` wins where both know).

        A tilt range derived from ``other``'s angles is dropped when ``self`` has its own range."""
        values = {}
        for f in dataclasses.fields(self):
            if f.name == "sources":
                continue
            mine = getattr(self, f.name)
            values[f.name] = mine if mine is not None else getattr(other, f.name)
        angles = values["tilt_angles_deg"]
        for name in ("defocus_um", "dose_e_a2"):  # per-tilt values of another tilt list cannot be paired
            v = values[name]
            if v is not None and len(v) > 1 and (angles is None or len(v) != len(angles)) and getattr(self, name) is None:
                warnings.warn(f"{name} ({other.describe_sources()}) has {len(v)} values for "
                              f"{'no' if angles is None else len(angles)} tilt angles; not used", MetadataWarning, stacklevel=2)
                values[name] = None
        if self.tilt_range_deg is not None:
            values["tilt_range_deg"] = self.tilt_range_deg
        used = other.sources if any(getattr(self, k) is None and getattr(other, k) is not None for k in values) else ()
        return Acquisition(**values, sources=self.sources + tuple(s for s in used if s not in self.sources))

    # ------------------------------------------------------------------ serialisation

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (round trip with :meth:`from_dict`); unknown fields are ``None``."""
        d = dataclasses.asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Acquisition:
        """Inverse of :meth:`to_dict` (unknown keys are an error; ``None`` gives an empty Acquisition)."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise InputError(f"acquisition metadata must be a mapping, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(f"acquisition metadata: unknown key(s) {unknown}")
        d = {k: (tuple(v) if isinstance(v, list | tuple) else v) for k, v in data.items()}
        return cls(**d)

    @classmethod
    def from_tilts(cls, angles_deg: Sequence[float], **values: Any) -> Acquisition:
        """Shorthand: an Acquisition with these tilt angles and other fields."""
        return cls(tilt_angles_deg=tuple(float(a) for a in angles_deg), **values)

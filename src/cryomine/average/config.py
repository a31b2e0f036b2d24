"""Settings of subtomogram alignment and averaging: frozen, validated dataclasses (the only place with defaults).

:class:`AlignConfig` says how one subtomogram is aligned to a reference; :class:`AverageConfig` how the
iterative align-and-average (and multi-reference classification) runs. Values that depend on the data
(``tilt_range_deg``, ``initial_lowpass_a``, ``mask_radius_a``) default to ``None`` and are resolved from the input
(see :meth:`AverageConfig.resolved_tilt_range` and friends).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from cryomine.acquisition import Acquisition
from cryomine.errors import InputError, check_int
from cryomine.geometry.tilts import check_tilt_range

#: config fields and the ``cryomine average`` options that set them (errors name the option a user typed)
OPTIONS = {"angular_step_deg": "--angular-step", "local_step_deg": "--local-step", "max_shift_vox": "--max-shift",
           "initial_lowpass_a": "--lowpass", "mask_radius_a": "--mask-radius", "initial_iterations": "--initial-iterations",
           "iterations": "--iterations", "classes": "--classes", "seed": "--seed"}


def _option(field: str) -> str:
    """The CLI option of a config field, or the field's name when no option sets it (config files only)."""
    return OPTIONS.get(field, field)


def _finite(value: Any, name: str) -> float:
    if isinstance(value, bool):
        raise InputError(f"must be a number, got {value!r}", _option(name))
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"must be a number, got {value!r}", _option(name)) from None
    if not math.isfinite(v):
        raise InputError(f"must be finite, got {value!r}", _option(name))
    return v


@dataclass(frozen=True)
class AlignConfig:
    """How a subtomogram is aligned to a reference (see :mod:`cryomine.average.align`).

    ``angular_step_deg``: step of the uniform global rotational search (``angular_sampling``). ``local_step_deg``:
    the finest step of the local refinement around the best global orientation (halving from
    ``angular_step_deg / 2``). ``max_shift_vox``: largest shift searched (voxels, distance of the particle
    centre from the box centre). ``global_max_resolution_a``: the global search uses frequencies up to this
    resolution (Å) at most (``None``: a cap matched to the angular step and box, see
    :func:`cryomine.average.align.global_cutoff`); the local refinement uses all frequencies of the (low-passed)
    reference. ``candidates``: the best orientations of the global search that get a first local refinement
    level (at the global search's resolution) before the best of them is refined fully: protects against the
    true orientation falling between grid points. ``whiten``: divide particle and reference spectra by the
    particles' mean amplitude per shell (noise whitening: weights frequencies by their SNR). ``chunk_mb``:
    working-memory budget of one batched score computation.
    """

    angular_step_deg: float = 15.0
    local_step_deg: float = 1.0
    max_shift_vox: float = 4.0
    global_max_resolution_a: float | None = None
    candidates: int = 8
    whiten: bool = True
    chunk_mb: float = 96.0

    def __post_init__(self) -> None:
        step = _finite(self.angular_step_deg, "angular_step_deg")
        if not 1.0 <= step <= 90.0:
            raise InputError(f"angular step must be in [1, 90] degrees, got {step:g}", _option("angular_step_deg"))
        local = _finite(self.local_step_deg, "local_step_deg")
        if not 0.05 <= local <= step:
            raise InputError(
                f"local refinement step must be in [0.05, angular step {step:g}] degrees, got {local:g}", _option("local_step_deg")
            )
        shift = _finite(self.max_shift_vox, "max_shift_vox")
        if not 0.0 <= shift <= 64.0:
            raise InputError(f"max shift must be in [0, 64] voxels, got {shift:g}", _option("max_shift_vox"))
        if self.global_max_resolution_a is not None and not _finite(self.global_max_resolution_a, "global_max_resolution_a") > 0:
            raise InputError("global search resolution must be > 0 Å", "global_max_resolution_a")
        check_int(self.candidates, _option("candidates"), 1)
        if not _finite(self.chunk_mb, "chunk_mb") >= 1.0:
            raise InputError(f"chunk_mb must be >= 1, got {self.chunk_mb!r}", "chunk_mb")


@dataclass(frozen=True)
class AverageConfig:
    """Iterative alignment, averaging and classification (see :mod:`cryomine.average.averaging`).

    ``iterations``: align-and-average rounds. ``classes``: number of references K (1 = plain averaging).
    ``tilt_range_deg``: ``(min, max)`` tilt (degrees) of the missing wedge; ``None``: from the dataset, else
    ``(-60, 60)``. ``initial_lowpass_a``: low-pass (Å) of the starting reference (``None``: ``6 * voxel``).
    ``initial_iterations``: without a given reference, the first rounds (at most ``iterations - 1``) align both
    half sets to one common reference at ``initial_lowpass_a`` (building an initial model); the later rounds are
    gold-standard (each half set against its own half map). ``mask_radius_a``: radius (Å) of the soft spherical
    mask applied to references and used for the FSC (``None``: ``0.3 * box``, for boxes about twice the
    particle's diameter); a mask file given to
    :func:`~cryomine.average.averaging.run_average` replaces it. ``mask_edge_vox``: width of the mask's cosine
    edge. ``phase_flip``: correct the CTF phases when the input knows its optics (simulated datasets).
    ``wiener_fraction``: regularisation of the wedge-weighted average ``sum W_i F_i / (sum W_i + f * N)``.
    ``center_reference``: keep the reference's centre of mass at the box centre (reference-free runs).
    ``fsc_weighting``: weight the reference's shells by ``sqrt(2 FSC / (1 + FSC))`` of the last half-map FSC
    before the low-pass (gold-standard rounds). ``seed``: half sets, initial
    random rotations, class seeds. ``align``: :class:`AlignConfig`.
    """

    iterations: int = 8
    classes: int = 1
    tilt_range_deg: tuple[float, float] | None = None
    initial_lowpass_a: float | None = None
    initial_iterations: int = 3
    mask_radius_a: float | None = None
    mask_edge_vox: float = 3.0
    phase_flip: bool = True
    wiener_fraction: float = 0.05
    center_reference: bool = True
    fsc_weighting: bool = True
    seed: int = 0
    align: AlignConfig = field(default_factory=AlignConfig)

    def __post_init__(self) -> None:
        for name, low, high in (("iterations", 1, 1000), ("classes", 1, 64), ("initial_iterations", 0, 1000), ("seed", 0, None)):
            check_int(getattr(self, name), _option(name), low, high)
        if self.tilt_range_deg is not None:
            try:
                lo, hi = self.tilt_range_deg
            except (TypeError, ValueError):
                raise InputError(f"tilt range must be (min, max) degrees, got {self.tilt_range_deg!r}", "tilt_range_deg") from None
            object.__setattr__(self, "tilt_range_deg", check_tilt_range(lo, hi, "--tilt-min/--tilt-max"))
        for name in ("initial_lowpass_a", "mask_radius_a"):
            value = getattr(self, name)
            if value is not None and not _finite(value, name) > 0:
                raise InputError(f"must be > 0 Å, got {value!r}", _option(name))
        if not 0.0 <= _finite(self.mask_edge_vox, "mask_edge_vox") <= 64:
            raise InputError(f"mask edge must be in [0, 64] voxels, got {self.mask_edge_vox!r}", "mask_edge_vox")
        if not 0.0 <= _finite(self.wiener_fraction, "wiener_fraction") <= 10.0:
            raise InputError(f"wiener_fraction must be in [0, 10], got {self.wiener_fraction!r}", "wiener_fraction")
        if not isinstance(self.align, AlignConfig):
            raise InputError("align must be an AlignConfig", "align")

    def resolved_tilt_range(self, acquisition: Acquisition) -> tuple[float, float]:
        """The tilt range to use: this config's (the flags), else the input's metadata, else ``(-60, 60)`` with a
        :class:`~cryomine.acquisition.MetadataWarning` saying so."""
        if self.tilt_range_deg is not None:
            return self.tilt_range_deg
        return acquisition.resolved_tilt_range("average")

    def resolved_initial_lowpass_a(self, voxel_size_a: float) -> float:
        """Initial low-pass (Å): this config's or ``6 * voxel`` (never finer than Nyquist)."""
        value = self.initial_lowpass_a if self.initial_lowpass_a is not None else 6.0 * voxel_size_a
        return max(value, 2.0 * voxel_size_a)

    def resolved_mask_radius_vox(self, box: int, voxel_size_a: float) -> float:
        """Mask radius in voxels: ``mask_radius_a / voxel`` or ``0.3 * box`` (a box twice the particle's size)."""
        if self.mask_radius_a is None:
            return 0.3 * box
        return self.mask_radius_a / voxel_size_a

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (round trip with :meth:`from_dict`)."""
        d = dataclasses.asdict(self)
        if d["tilt_range_deg"] is not None:
            d["tilt_range_deg"] = list(d["tilt_range_deg"])
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AverageConfig:
        """Inverse of :meth:`to_dict` (unknown keys are an error)."""
        d = dict(data)
        align = AlignConfig(**d.pop("align", {}))
        if d.get("tilt_range_deg") is not None:
            d["tilt_range_deg"] = tuple(d["tilt_range_deg"])
        try:
            return cls(align=align, **d)
        except TypeError as exc:
            raise InputError(f"bad averaging config ({exc})") from None


def build_average_config(**overrides: Any) -> AverageConfig:
    """An :class:`AverageConfig` from flat CLI-style overrides (``None`` = not given = the dataclass default).

    Flat names: the fields of :class:`AverageConfig`, plus those of :class:`AlignConfig` (``angular_step_deg``,
    ``local_step_deg``, ``max_shift_vox``, ...). ``tilt_min``/``tilt_max`` set ``tilt_range_deg`` (both needed).
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    tmin, tmax = given.pop("tilt_min", None), given.pop("tilt_max", None)
    if (tmin is None) != (tmax is None):
        raise InputError("give both --tilt-min and --tilt-max (or neither: the dataset's range)", "--tilt-min/--tilt-max")
    if tmin is not None:
        given["tilt_range_deg"] = (tmin, tmax)
    align_names = {f.name for f in dataclasses.fields(AlignConfig)}
    avg_names = {f.name for f in dataclasses.fields(AverageConfig)} - {"align"}
    unknown = set(given) - align_names - avg_names
    if unknown:
        raise InputError(f"unknown averaging parameter(s) {sorted(unknown)}")
    align = AlignConfig(**{k: v for k, v in given.items() if k in align_names})
    return AverageConfig(align=align, **{k: v for k, v in given.items() if k in avg_names})

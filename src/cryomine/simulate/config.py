"""The subtomogram dataset config, its presets, and building it from flat CLI-style overrides.

Presets mirror the DSM-Net paper's datasets (Liu et al., BMVC 2018): 22 classes, 3205 subtomograms of 40³
voxels at 10 Å, tilt range ±60°; A at SNR 0.06, B at SNR 0.01. Explicit values override a preset's
(``--preset dsmnet-a --per-class 12`` makes a smaller A).

The 22 preset classes are the bundled structures less five: 5gjv (a membrane protein), 4v4r_30S and 4v4r_50S
(subunits of 4v4r, which is kept), and 4v94 and 5mrc (370 Å and 353 Å across: they do not fit a 400 Å box).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryomine.acquisition.ctf import MicroscopeConfig
from cryomine.errors import InputError
from cryomine.simulate.from_tomograms import FromTomogramsConfig
from cryomine.simulate.imaging import ImagingConfig
from cryomine.simulate.scene import CrowdingConfig
from cryomine.simulate.tilt import TiltSeriesConfig
from cryomine.simulate.variation import ImagingVariation

_DEFAULT_IMAGING = ImagingConfig(snr=0.06)

DSMNET_CLASSES = (
    "1bxn", "1f4a", "1qvr", "1s3x", "1u6g", "2cg9", "2uv8", "3cf3", "3d2f", "3gl1", "3h84",
    "3ipm", "3j9i", "3qm1", "4cr2", "4v4r", "4v7r", "6pxm", "6qzp", "6utj", "7n4y", "8tux",
)  # fmt: skip


SNR_DEFINITIONS = ("box", "aitom")


@dataclass(frozen=True)
class SubtomogramDatasetConfig:
    """Everything that determines a simulated subtomogram dataset (saved in the dataset file).

    ``structures``: class names (bundled ids or files), one class each. Either ``per_class`` subtomograms per
    class or ``total`` subtomograms (classes assigned round robin: sample ``i`` has class ``i % C``).
    ``size``: box edge (voxels), ``voxel_size_a`` in Å. ``method``: ``"wbp"`` (projection, CTF, noise,
    weighted back-projection) or ``"fourier"`` (the fast Fourier-space approximation). ``batch_size``:
    subtomograms imaged together (part of the config because the noise stream is drawn per batch).
    ``variation``: imaging parameters drawn per batch and crowding per box (:class:`ImagingVariation`; nothing
    varies by default).
    ``snr_definition``: ``"box"`` (cryomine's: ``imaging.snr`` is the SNR measured in the final box) or ``"aitom"``
    (the Xu lab's: ``imaging.snr`` sets the noise AITom's convolution recipe adds, :mod:`cryomine.simulate.aitom`;
    the boxes are imaged by that recipe, not by a tilt series, and ``method`` is then not used).
    """

    structures: tuple[str, ...] = DSMNET_CLASSES
    per_class: int | None = 10
    total: int | None = None
    size: int = 40
    voxel_size_a: float = 10.0
    seed: int = 0
    mask_threshold: float = 0.1
    method: str = "wbp"
    batch_size: int = 32
    imaging: ImagingConfig = field(default_factory=lambda: _DEFAULT_IMAGING)
    crowding: CrowdingConfig = field(default_factory=CrowdingConfig)
    variation: ImagingVariation = field(default_factory=ImagingVariation)
    snr_definition: str = "box"
    from_tomograms: FromTomogramsConfig | None = None

    def __post_init__(self) -> None:
        if self.from_tomograms is not None and self.variation.crowding is not None:
            raise InputError("--from-tomograms boxes take their crowding from the tomogram's packing", "--vary-crowding")
        if self.from_tomograms is not None and self.snr_definition != "box":
            raise InputError("--from-tomograms images whole tomograms: only --snr-definition box applies", "--snr-definition")
        if len(self.structures) < 1:
            raise InputError("need at least one structure", "--structures")
        if len(set(self.structures)) != len(self.structures):
            raise InputError("structures are listed twice", "--structures")
        if (self.per_class is None) == (self.total is None):
            raise InputError("give exactly one of per_class and total", "--per-class/--total")
        if self.per_class is not None and self.per_class < 1:
            raise InputError(f"per-class count must be >= 1, got {self.per_class}", "--per-class")
        if self.total is not None and self.total < 1:
            raise InputError(f"total count must be >= 1, got {self.total}", "--total")
        if self.size < 8:
            raise InputError(f"box size must be >= 8 voxels, got {self.size}", "--size")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise InputError(f"seed must be an integer >= 0, got {self.seed!r}", "--seed")
        if not (math.isfinite(self.voxel_size_a) and self.voxel_size_a > 0):
            raise InputError(f"voxel size must be > 0 Å, got {self.voxel_size_a:g}", "--voxel-size")
        if self.method not in ("wbp", "fourier"):
            raise InputError(f"method must be 'wbp' or 'fourier', got {self.method!r}", "--method")
        if self.snr_definition not in SNR_DEFINITIONS:
            raise InputError(f"SNR definition must be one of {', '.join(SNR_DEFINITIONS)}, got {self.snr_definition!r}",
                             "--snr-definition")
        if self.batch_size < 1:
            raise InputError(f"batch size must be >= 1, got {self.batch_size}", "--batch-size")
        if not 0.0 < self.mask_threshold < 1.0:
            raise InputError(f"mask threshold must be in (0, 1), got {self.mask_threshold:g}", "--mask-threshold")

    def resource_estimate(self) -> tuple[float, float]:
        """``(disk bytes of the dataset file, working memory bytes of one batch)``, before anything is made: per
        voxel of a row the file holds the subtomogram, clean density, noise-free and unit-noise reconstructions
        (float32) and the mask (uint8); a batch holds ~16 float32 arrays of the padded scene per row."""
        scene = float(self.size + 2 * self.crowding.pad) ** 3
        if self.from_tomograms is not None:
            z, y, x = self.from_tomograms.shape_zyx
            batch = 10.0 * 4 * z * y * x  # a whole tomogram: density, occupancy, projections, 3 reconstructions
        else:
            batch = 16.0 * 4 * scene * self.batch_size
        return 17.0 * float(self.n_total) * float(self.size) ** 3, batch

    @property
    def n_total(self) -> int:
        """Number of subtomograms."""
        return self.total if self.total is not None else self.per_class * len(self.structures)  # type: ignore[operator]

    def class_of(self, index: int) -> int:
        """Class id of subtomogram ``index`` (round robin over classes)."""
        return index % len(self.structures)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (nested configs as dicts, tuples as lists, inf SNR as the string ``"inf"``)."""
        d = dataclasses.asdict(self)
        d["structures"] = list(self.structures)
        if math.isinf(self.imaging.snr):
            d["imaging"]["snr"] = "inf"
        d.pop("variation")
        if self.variation.active:  # left out when nothing varies, as in datasets made before it existed
            d["variation"] = self.variation.to_dict()
        if self.snr_definition == "box":  # left out for the default, as in datasets made before it existed
            d.pop("snr_definition")
        d.pop("from_tomograms")
        if self.from_tomograms is not None:
            d["from_tomograms"] = self.from_tomograms.to_dict()
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SubtomogramDatasetConfig:
        """Inverse of :meth:`to_dict`."""
        d = dict(data)
        im = dict(d.pop("imaging"))
        im["snr"] = float(im["snr"])
        imaging = ImagingConfig(
            tilt=TiltSeriesConfig(**im.pop("tilt")), microscope=MicroscopeConfig(**im.pop("microscope")), **im
        )
        crowding = CrowdingConfig(**d.pop("crowding"))
        variation = ImagingVariation.from_dict(d.pop("variation", None))
        ft = d.pop("from_tomograms", None)
        d["structures"] = tuple(d["structures"])
        return cls(imaging=imaging, crowding=crowding, variation=variation,
                   from_tomograms=None if ft is None else FromTomogramsConfig(**{**ft, "shape_zyx": tuple(ft["shape_zyx"])}), **d)


PRESETS: dict[str, dict[str, Any]] = {
    "dsmnet-a": {"structures": DSMNET_CLASSES, "total": 3205, "per_class": None, "size": 40, "voxel_size_a": 10.0, "snr": 0.06},
    "dsmnet-b": {"structures": DSMNET_CLASSES, "total": 3205, "per_class": None, "size": 40, "voxel_size_a": 10.0, "snr": 0.01},
    # the paper's construction: 3,205 boxes at the true positions of 10,000 molecules in one 600 x 600 x 300 tomogram
    "dsmnet-a-tomo": {"structures": DSMNET_CLASSES, "total": 3205, "per_class": None, "size": 40, "voxel_size_a": 10.0, "snr": 0.06,
                      "from_tomograms": True},
}

# flat override name -> (section, field); section None = top level
_FLAT = {
    "snr": ("imaging", "snr"),
    "tilt_min": ("tilt", "min_deg"),
    "tilt_max": ("tilt", "max_deg"),
    "tilt_step": ("tilt", "step_deg"),
    "voltage_kv": ("microscope", "voltage_kv"),
    "cs_mm": ("microscope", "cs_mm"),
    "defocus_um": ("microscope", "defocus_um"),
    "amplitude_contrast": ("microscope", "amplitude_contrast"),
    "b_factor_a2": ("microscope", "b_factor_a2"),
    "crowding": ("crowding", "volume_fraction"),
    "max_shift": ("crowding", "max_shift_vox"),
}

# flat override name -> ImagingVariation field
_VARY = {"vary_defocus": "defocus_um", "vary_tilt_min": "tilt_min_deg", "vary_tilt_max": "tilt_max_deg", "vary_crowding": "crowding"}


def build_dataset_config(preset: str | None = None, **overrides: Any) -> SubtomogramDatasetConfig:
    """Resolve a config: dataclass defaults < ``preset`` < explicit ``overrides`` (``None`` = not given).

    Overrides use the flat names of the CLI (``snr``, ``tilt_min``, ``defocus_um``, ``crowding``, ``per_class``,
    ``total``, ``vary_defocus`` / ``vary_tilt_min`` / ``vary_tilt_max`` / ``vary_crowding`` as ``(low, high)``, ...).
    Giving ``per_class`` clears a preset's ``total`` and vice versa.
    """
    values: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise InputError(f"unknown preset {preset!r} (known: {', '.join(PRESETS)})", "--preset")
        values.update(PRESETS[preset])
    given = {k: v for k, v in overrides.items() if v is not None}
    if "per_class" in given:
        values["total"] = None
    if "total" in given:
        values["per_class"] = None
    values.update(given)
    if "vary_crowding" in given and "crowding" in given:
        raise InputError("give one of --crowding (one volume fraction) and --vary-crowding (a range)", "--vary-crowding")
    variation = ImagingVariation(**{name: values.pop(key) for key, name in _VARY.items() if key in values})
    tomo_shape, tomo_particles = values.pop("tomogram_shape", None), values.pop("tomogram_particles", None)
    if values.pop("from_tomograms", False) or tomo_shape is not None or tomo_particles is not None:
        base = FromTomogramsConfig()
        values["from_tomograms"] = FromTomogramsConfig(shape_zyx=tomo_shape or base.shape_zyx, particles=tomo_particles or base.particles)
    flat = {k: values.pop(k) for k in list(values) if k in _FLAT}
    crowding = {name: flat.pop(key) for key, (section, name) in list(_FLAT.items()) if section == "crowding" and key in flat}
    fields = {f.name for f in dataclasses.fields(SubtomogramDatasetConfig)}
    unknown = set(values) - fields
    if unknown:
        raise InputError(f"unknown simulation parameter(s) {sorted(unknown)}")
    top = {k: (tuple(v) if k == "structures" else v) for k, v in values.items()}
    return SubtomogramDatasetConfig(imaging=build_imaging_config(**flat), crowding=CrowdingConfig(**crowding),
                                    variation=variation, **top)


def build_imaging_config(**flat: Any) -> ImagingConfig:
    """An :class:`ImagingConfig` from flat names (``snr``, ``tilt_min``, ``defocus_um``, ...; ``None`` = default).

    The default SNR is 0.06 (the DSM-Net paper's dataset A).
    """
    sections: dict[str, dict[str, Any]] = {"imaging": {"snr": _DEFAULT_IMAGING.snr}, "tilt": {}, "microscope": {}}
    for key, value in flat.items():
        if value is None:
            continue
        if key not in _FLAT or _FLAT[key][0] == "crowding":
            raise InputError(f"unknown imaging parameter {key!r}")
        section, name = _FLAT[key]
        sections[section][name] = value
    return ImagingConfig(
        tilt=TiltSeriesConfig(**sections["tilt"]), microscope=MicroscopeConfig(**sections["microscope"]), **sections["imaging"]
    )

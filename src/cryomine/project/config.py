"""Settings of ``cryomine run PROJECT``: what is done to every tomogram (:class:`ProjectConfig`, saved as the
run's ``project.json`` and compared on resume) and how the work is spread (:class:`BatchOptions`, not part of the
results). Lengths in Å where named ``_a``, voxels where named ``_vox``; angles in degrees."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from cryomine.acquisition import Acquisition
from cryomine.errors import InputError, check_int
from cryomine.pick.config import METHODS

__all__ = ["ACQUISITION_FIELDS", "BatchOptions", "ProjectConfig"]

#: Acquisition fields a project-wide flag may set (each tomogram's own metadata fills the rest).
ACQUISITION_FIELDS = ("voxel_size_a", "tilt_min_deg", "tilt_max_deg", "defocus_um", "voltage_kv", "cs_mm", "amplitude_contrast", "polarity")


def _optional_positive(value: object, option: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InputError(f"must be a positive number, got {value!r}", option)


@dataclass(frozen=True)
class ProjectConfig:
    """The pipeline run on each tomogram: pick -> extract -> classify/segment/recover -> atlas -> discover -> average.

    Attributes:
        model: DSM-Net run folder or ``pretrained:NAME`` that classifies, segments and recovers the picks.
        pick_method: ``dog`` (one radius for every class) or ``learned`` (the multi-class picker ``picker``).
        picker: picker run folder or ``pretrained:NAME`` for ``pick_method="learned"``.
        radius_a: DoG particle radius (Å); ``None`` = the median radius of the model's classes.
        top_n: keep at most this many picks per tomogram (``None``: the picker's automatic threshold).
        box_vox: edge of the boxes cut around the picks (voxels); ``None`` = the model's input edge.
        k: discovery clusters; ``None`` = the model's class count + 1 (fewer when a tomogram has fewer picks).
        average_classes: average the subtomograms of this many most frequent predicted classes (0 = none).
        average_min_particles: a class is averaged only with at least this many picks.
        average_iterations: align-and-average rounds of each average.
        tomo_type: the tomogram of a copick run to use (e.g. ``wbp``, ``denoised``).
        seed: seed of picking tie-breaks, clustering and averaging.
        voxel_size_a ... polarity: project-wide acquisition flags (``None`` = each tomogram's metadata); the same
            meaning as the single commands' ``--voxel-size``, ``--tilt-min`` ... ``--polarity``.
    """

    model: str = "pretrained:dsmnet-a"
    pick_method: str = "dog"
    picker: str = "pretrained:picker"
    radius_a: float | None = None
    top_n: int | None = None
    box_vox: int | None = None
    k: int | None = None
    average_classes: int = 1
    average_min_particles: int = 10
    average_iterations: int = 4
    tomo_type: str = "wbp"
    seed: int = 0
    voxel_size_a: float | None = None
    tilt_min_deg: float | None = None
    tilt_max_deg: float | None = None
    defocus_um: float | None = None
    voltage_kv: float | None = None
    cs_mm: float | None = None
    amplitude_contrast: float | None = None
    polarity: str | None = None

    def __post_init__(self) -> None:
        if self.pick_method not in ("dog", "learned"):
            known = ", ".join(m for m in METHODS if m != "template")
            raise InputError(f"must be one of {known} for a project (template matching: run 'cryomine pick' per class), "
                             f"got {self.pick_method!r}", "--method")  # fmt: skip
        _optional_positive(self.radius_a, "--radius")
        for name, option, low, high in (("top_n", "--top-n", 1, 100_000), ("box_vox", "--box", 8, 256), ("k", "--k", 2, 1000)):
            if getattr(self, name) is not None:
                check_int(getattr(self, name), option, low, high)
        check_int(self.average_classes, "--average-classes", 0, 100)
        check_int(self.average_min_particles, "--average-min-particles", 2, 1_000_000)
        check_int(self.average_iterations, "--average-iterations", 1, 100)
        check_int(self.seed, "--seed", 0)
        if not self.tomo_type or any(c in self.tomo_type for c in "/\\"):
            raise InputError(f"must be a tomogram type name, got {self.tomo_type!r}", "--tomo-type")
        self.acquisition_flags()  # validates the acquisition fields (ranges, polarity) where they enter

    def acquisition_flags(self) -> Acquisition:
        """The project-wide flags as an :class:`Acquisition` (source ``flags``); unknown fields stay ``None``."""
        given = {f: getattr(self, f) for f in ACQUISITION_FIELDS if getattr(self, f) is not None}
        return Acquisition().updated("flags", **given)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able copy (the run's ``project.json``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProjectConfig:
        """The config saved by :meth:`to_dict` (unknown keys refused)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(f"unknown project settings: {', '.join(unknown)}", "project.json")
        return cls(**data)

    def differences(self, other: ProjectConfig) -> list[str]:
        """``name: mine -> other`` for every field that differs."""
        a, b = self.to_dict(), other.to_dict()
        return [f"{k}: {a[k]!r} -> {b[k]!r}" for k in a if a[k] != b[k]]


@dataclass(frozen=True)
class BatchOptions:
    """How the tomograms are spread; not part of the results (two runs differing only here give the same files).

    Attributes:
        workers: local Dask worker processes, one tomogram each at a time; 0 = no Dask, every tomogram in this
            process, one after the other.
        threads: torch/numpy threads per tomogram task; ``None`` = the machine's CPUs shared among the workers.
        scheduler: address of a running Dask scheduler (``tcp://host:8786``) instead of a local cluster.
        progress: one progress bar for the project.
    """

    workers: int = 1
    threads: int | None = None
    scheduler: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        check_int(self.workers, "--workers", 0, 256)
        if self.threads is not None:
            check_int(self.threads, "--threads", 1, 1024)
        if self.scheduler is not None and not self.scheduler.strip():
            raise InputError("must be a scheduler address such as tcp://host:8786", "--scheduler")

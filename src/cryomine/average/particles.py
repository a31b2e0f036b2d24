"""Inputs of subtomogram averaging.

Inputs (:func:`load_particles`): a cryomine subtomogram dataset (``.h5``: subtomograms, voxel size, tilt range and
optics from its generating config, ground truth when present), or a RELION particles STAR file plus the
tomogram (MRC) its coordinates refer to: boxes of ``box`` voxels are cut out around each particle centre
(``rlnCoordinate`` minus ``rlnOrigin*Angst`` when present), padded with the tomogram's mean where they leave it.
Every particle is normalised to zero mean and unit standard deviation.

Outputs are written by :mod:`cryomine.average.output`, the ``--resume`` checkpoint by
:mod:`cryomine.average.checkpoint`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from cryomine.acquisition.ctf import MicroscopeConfig
from cryomine.errors import InputError
from cryomine.geometry.boxes import cut_boxes
from cryomine.geometry.validate import check_voxel_size
from cryomine.io.mrc import open_mrc_mmap
from cryomine.io.star import ORIGIN_COLUMNS, coordinates_xyz_voxels, read_particles
from cryomine.io.subtomo_h5 import read_header, read_rows

__all__ = ["ParticleData", "load_particles", "load_dataset", "load_star"]


@dataclass(frozen=True)
class ParticleData:
    """Particles to average.

    ``particles``: ``(N, n, n, n)`` float32, normalised. ``voxel_size_a``: Å. ``tilt_range_deg``: the input's
    tilt range or None. ``microscope``: :class:`cryomine.acquisition.ctf.MicroscopeConfig` of the input or None.
    ``coords_xyz``: ``(N, 3)`` positions in the source (voxels, x y z). ``names``: ``N`` particle names
    (``index@file``). ``tomo_name``: source name. ``true_eulers_zyz`` / ``true_classes`` / ``class_names``:
    ground truth when the input has it.
    """

    particles: np.ndarray
    voxel_size_a: float
    tilt_range_deg: tuple[float, float] | None
    microscope: object | None
    coords_xyz: np.ndarray
    names: list[str]
    tomo_name: str
    true_eulers_zyz: np.ndarray | None = None
    true_classes: np.ndarray | None = None
    class_names: list[str] | None = None

    @property
    def box(self) -> int:
        return int(self.particles.shape[-1])


def _normalise(stack: np.ndarray) -> np.ndarray:
    flat = stack.reshape(stack.shape[0], -1)
    mean = flat.mean(1, keepdims=True)
    std = flat.std(1, keepdims=True)
    return ((flat - mean) / np.where(std > 0, std, 1.0)).reshape(stack.shape).astype(np.float32)


def load_dataset(path: str | os.PathLike[str], max_particles: int | None = None) -> ParticleData:
    """Load a cryomine dataset file (all written rows, or the first ``max_particles``)."""
    p = Path(path)
    header = read_header(p)
    if header.n_written < 1:
        raise InputError("dataset has no subtomograms written", p)
    n = header.n_written if max_particles is None else min(header.n_written, int(max_particles))
    fields = ("subtomograms", "class_id") + (("eulers_zyz",) if header.has_ground_truth else ())
    rows = read_rows(p, fields, slice(0, n))
    vols = np.asarray(rows["subtomograms"], dtype=np.float32)
    if not np.isfinite(vols).all():
        raise InputError("subtomograms contain NaN/inf values", p)
    imaging = header.config.get("imaging") if isinstance(header.config, dict) else None
    tilt, microscope = None, None
    if isinstance(imaging, dict):
        t = imaging.get("tilt") or {}
        if "min_deg" in t and "max_deg" in t:
            tilt = (float(t["min_deg"]), float(t["max_deg"]))
        if isinstance(imaging.get("microscope"), dict):
            try:
                microscope = MicroscopeConfig(**imaging["microscope"])
            except (TypeError, InputError):
                microscope = None
    classes = np.asarray(rows["class_id"], dtype=np.int64)
    c = header.size // 2
    return ParticleData(
        particles=_normalise(vols),
        voxel_size_a=check_voxel_size(header.voxel_size_a, p),
        tilt_range_deg=tilt,
        microscope=microscope,
        coords_xyz=np.full((n, 3), float(c)),
        names=[f"{i + 1:06d}@{p.name}" for i in range(n)],
        tomo_name=p.stem,
        true_eulers_zyz=np.asarray(rows["eulers_zyz"], np.float64) if "eulers_zyz" in rows else None,
        true_classes=classes if (classes >= 0).any() else None,
        class_names=list(header.class_names),
    )


def load_star(star: str | os.PathLike[str], tomogram: str | os.PathLike[str], box: int) -> ParticleData:
    """Cut ``box``³ subtomograms out of ``tomogram`` (MRC) at the particles of ``star`` (RELION STAR)."""
    if isinstance(box, bool) or not isinstance(box, int) or not 8 <= box <= 512:
        raise InputError(f"box must be an integer in [8, 512] voxels, got {box!r}", "--box")
    table = read_particles(star)
    tomo = Path(tomogram)
    df = table.particles
    if "rlnTomoName" in df.columns and df["rlnTomoName"].astype(str).nunique() > 1:
        keep = (df["rlnTomoName"].astype(str) == tomo.stem).to_numpy()
        if not keep.any():
            raise InputError(f"the STAR lists several tomograms and none is named {tomo.stem!r}", star)
        table = replace(table, particles=df[keep].reset_index(drop=True))
        df = table.particles
    with open_mrc_mmap(tomo) as (data, vs):
        coords = coordinates_xyz_voxels(table)
        if set(ORIGIN_COLUMNS) <= set(df.columns):
            coords = coords - df[list(ORIGIN_COLUMNS)].to_numpy(np.float64) / vs
        step = max(1, int(np.prod(data.shape) // 2_000_000))
        fill = float(np.asarray(data.reshape(-1)[::step], dtype=np.float64).mean())
        vols = cut_boxes(data, coords[:, ::-1], box, fill)
    if not np.isfinite(vols).all():
        raise InputError("tomogram contains NaN/inf values inside the particle boxes", tomo)
    names = [f"{i + 1:06d}@{Path(star).name}" for i in range(len(vols))]
    return ParticleData(
        particles=_normalise(vols), voxel_size_a=vs, tilt_range_deg=None, microscope=None, coords_xyz=coords,
        names=names, tomo_name=tomo.stem,
    )  # fmt: skip


def load_particles(
    source: str | os.PathLike[str], tomogram: str | os.PathLike[str] | None = None, box: int | None = None,
    max_particles: int | None = None,
) -> ParticleData:
    """A dataset (``.h5``/``.hdf5``) or a STAR file with its tomogram (``box`` needed) -> :class:`ParticleData`."""
    p = Path(source)
    if p.suffix.lower() == ".star":
        if tomogram is None:
            raise InputError("a STAR input needs the tomogram its coordinates refer to (--tomogram)", p)
        if box is None:
            raise InputError("a STAR input needs the box size in voxels (--box)", p)
        data = load_star(p, tomogram, box)
        if max_particles is not None:
            data = _head(data, int(max_particles))
        return data
    if p.suffix.lower() in (".h5", ".hdf5"):
        if tomogram is not None:
            raise InputError("--tomogram is only for STAR inputs", p)
        return load_dataset(p, max_particles)
    raise InputError("input must be a cryomine dataset (.h5) or a RELION particles STAR file (.star)", p)


def _head(data: ParticleData, n: int) -> ParticleData:
    return replace(data, particles=data.particles[:n], coords_xyz=data.coords_xyz[:n], names=data.names[:n])

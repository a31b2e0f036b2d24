"""Inputs of subtomogram averaging.

Inputs (:func:`load_particles`): a cryomine subtomogram dataset (``.h5``: boxes, voxel size, positions and the
acquisition metadata it stores, ground truth when present), or a RELION particles STAR file plus the tomogram
its coordinates refer to: ``box``³ boxes are cut out around each particle centre (``rlnCoordinate`` minus
``rlnOrigin*Angst``) with :func:`cryomine.geometry.cut_boxes`, padded with the tomogram's mean, exactly as
``cryomine extract`` does (so both routes give the same particles). The acquisition (tilt range, optics,
polarity) of a STAR input comes from :func:`cryomine.acquisition.resolve_acquisition` (the flags, the
``--acquisition`` files, the files beside the tomogram, its header). Protein-dark inputs are inverted, so maps
come out protein bright. Every particle is normalised to zero mean and unit standard deviation
(:func:`cryomine.data.normalise`).

Outputs are written by :mod:`cryomine.average.output`, the ``--resume`` checkpoint by
:mod:`cryomine.average.checkpoint`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from cryomine.acquisition import Acquisition, tomogram_acquisition
from cryomine.data import dataset_acquisition, dataset_positions, normalise
from cryomine.errors import InputError
from cryomine.geometry.boxes import cut_boxes
from cryomine.geometry.validate import check_voxel_size, volume_stats
from cryomine.io.star import read_particles
from cryomine.io.subtomo_h5 import read_header, read_rows
from cryomine.io.tomo_particles import particle_centres_xyz, select_tomogram
from cryomine.io.volume import open_volume
from cryomine.resources import check_memory

__all__ = ["ParticleData", "load_particles", "load_dataset", "load_star"]


@dataclass(frozen=True)
class ParticleData:
    """Particles to average.

    ``particles``: ``(N, n, n, n)`` float32, normalised, protein bright. ``voxel_size_a``: Å. ``acquisition``:
    what the input says of how it was recorded (:class:`~cryomine.acquisition.Acquisition`; unknown fields are
    warned about where averaging needs them). ``coords_xyz``: ``(N, 3)`` positions in the tomogram (voxels,
    x y z). ``names``: ``N`` particle names (``index@file``). ``tomo_name``: the tomogram's name.
    ``true_eulers_zyz`` / ``true_classes`` / ``class_names``: ground truth when the input has it.
    """

    particles: np.ndarray
    voxel_size_a: float
    acquisition: Acquisition
    coords_xyz: np.ndarray
    names: list[str]
    tomo_name: str
    true_eulers_zyz: np.ndarray | None = None
    true_classes: np.ndarray | None = None
    class_names: list[str] | None = None

    @property
    def box(self) -> int:
        return int(self.particles.shape[-1])


def _bright(vols: np.ndarray, acquisition: Acquisition) -> np.ndarray:
    return -vols if acquisition.polarity == "dark" else vols


def load_dataset(path: str | os.PathLike[str], max_particles: int | None = None) -> ParticleData:
    """Load a cryomine dataset file (all written rows, or the first ``max_particles``)."""
    p = Path(path)
    header = read_header(p)
    if header.n_written < 1:
        raise InputError("dataset has no subtomograms written", p)
    n = header.n_written if max_particles is None else min(header.n_written, int(max_particles))
    fields = ("subtomograms", "class_id") + (("eulers_zyz",) if header.has_ground_truth else ())
    rows = read_rows(p, fields, slice(0, n))
    coords, tomo = dataset_positions(p, header, np.arange(n))
    vols = np.asarray(rows["subtomograms"], dtype=np.float32)
    if not np.isfinite(vols).all():
        raise InputError("subtomograms contain NaN/inf values", p)
    acq = dataset_acquisition(header)
    classes = np.asarray(rows["class_id"], dtype=np.int64)
    coords = coords if coords is not None else np.full((n, 3), float(header.size // 2))  # a box of its own
    return ParticleData(
        particles=normalise(_bright(vols, acq)),
        voxel_size_a=check_voxel_size(header.voxel_size_a, p),
        acquisition=acq,
        coords_xyz=coords,
        names=[f"{i + 1:06d}@{p.name}" for i in range(n)],
        tomo_name=tomo or p.stem,
        true_eulers_zyz=np.asarray(rows["eulers_zyz"], np.float64) if "eulers_zyz" in rows else None,
        true_classes=classes if (classes >= 0).any() else None,
        class_names=list(header.class_names),
    )


def load_star(star: str | os.PathLike[str], tomogram: str | os.PathLike[str], box: int,
              overrides: Acquisition | None = None, files: Sequence[str | os.PathLike[str]] = (),
              tomo_name: str | None = None) -> ParticleData:
    """Cut ``box``³ subtomograms out of ``tomogram`` (MRC or ``.em``) at the particles of ``star`` (RELION STAR) that belong
    to it (``tomo_name``, default the tomogram's stem); ``overrides`` (the flags) and ``files`` feed
    :func:`~cryomine.acquisition.resolve_acquisition`."""
    if isinstance(box, bool) or not isinstance(box, int) or not 8 <= box <= 512:
        raise InputError(f"box must be an integer in [8, 512] voxels, got {box!r}", "--box")
    tomo = Path(tomogram)
    table, name = select_tomogram(read_particles(star), tomo_name or tomo.stem, star)
    if len(table.particles) == 0:
        raise InputError("holds no particles", star)
    # the boxes, their Fourier transforms and the half-set sums (about 6 copies of float32 boxes)
    check_memory(6.0 * 4 * len(table.particles) * box**3, f"averaging {len(table.particles)} boxes of {box}³", "--box")
    acq = tomogram_acquisition(tomo, overrides, files, tomo_name=tomo_name or name)
    with open_volume(tomo, acq.voxel_size_a) as vol:
        data = vol.data
        if box > min(data.shape):
            raise InputError(f"{box} voxels is larger than the tomogram {tuple(data.shape)} (z, y, x)", "--box")
        coords = particle_centres_xyz(table, acq.voxel_size_a)
        fill, _ = volume_stats(data, tomo)
        vols = cut_boxes(data, coords[:, ::-1], box, fill)
    names = [f"{i + 1:06d}@{Path(star).name}" for i in range(len(vols))]
    return ParticleData(
        particles=normalise(_bright(vols, acq)), voxel_size_a=acq.voxel_size_a, acquisition=acq, coords_xyz=coords,
        names=names, tomo_name=name,
    )  # fmt: skip


def load_particles(
    source: str | os.PathLike[str], tomogram: str | os.PathLike[str] | None = None, box: int | None = None,
    max_particles: int | None = None, overrides: Acquisition | None = None,
    files: Sequence[str | os.PathLike[str]] = (), tomo_name: str | None = None,
) -> ParticleData:
    """A dataset (``.h5``/``.hdf5``) or a STAR file with its tomogram (``box`` needed) -> :class:`ParticleData`."""
    p = Path(source)
    if p.suffix.lower() == ".star":
        if tomogram is None:
            raise InputError("a STAR input needs the tomogram its coordinates refer to (--tomogram)", p)
        if box is None:
            raise InputError("a STAR input needs the box size in voxels (--box)", p)
        data = load_star(p, tomogram, box, overrides, files, tomo_name)
        if max_particles is not None:
            data = _head(data, int(max_particles))
        return data
    if p.suffix.lower() in (".h5", ".hdf5"):
        if tomogram is not None:
            raise InputError("--tomogram is only for STAR inputs", p)
        if box is not None:
            raise InputError("is only for STAR inputs (a dataset's boxes keep their size)", "--box")
        data = load_dataset(p, max_particles)
        if overrides is not None and overrides != Acquisition():
            data = replace(data, acquisition=overrides.merged(data.acquisition))
        return data
    raise InputError("input must be a cryomine dataset (.h5) or a RELION particles STAR file (.star)", p)


def _head(data: ParticleData, n: int) -> ParticleData:
    return replace(data, particles=data.particles[:n], coords_xyz=data.coords_xyz[:n], names=data.names[:n])

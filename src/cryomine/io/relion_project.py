"""A RELION 5 tomography project of picked particles: ``tomograms.star``, ``particles.star`` and an optimisation set,
the three files RELION 5's subtomogram jobs (*Extract subtomos*, *Reconstruct particle*, *3D refine*) start from.

- ``tomograms.star`` (``data_global``): one row per tomogram with ``rlnTomoName``, ``rlnTomoSizeX/Y/Z`` (voxels of
  the tomogram; written with ``rlnTomoTomogramBinning`` 1 and ``rlnTomoTiltSeriesPixelSize`` = the tomogram's voxel
  size, as cryomine does not know the tilt series' own pixel), ``rlnTomoReconstructedTomogram`` (the volume) and the
  optics where known (``rlnVoltage``, ``rlnSphericalAberration``, ``rlnAmplitudeContrast``; a column is written only
  when every tomogram knows it: nothing is made up).
- ``particles.star``: ``data_optics`` (one group per tomogram) and ``data_particles`` with ``rlnTomoName`` and RELION 5's
  centred coordinates ``rlnCenteredCoordinateX/Y/ZAngst`` = ``(voxel - size / 2) * voxel_size`` (the inverse of
  :func:`cryomine.io.star.coordinates_xyz_voxels`), plus every other column of the particles given (class, scores,
  angles).
- ``optimisation_set.star``: ``rlnTomoParticlesFile`` and ``rlnTomoTomogramsFile``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from cryomine.errors import InputError
from cryomine.io.atomic import atomic_output
from cryomine.io.star import CENTERED_COLUMNS, COORDINATE_COLUMNS, ParticleTable, coordinates_xyz_voxels

__all__ = ["RelionTomogram", "write_relion5_project"]

_OPTICS = (("voltage_kv", "rlnVoltage"), ("cs_mm", "rlnSphericalAberration"), ("amplitude_contrast", "rlnAmplitudeContrast"))


@dataclass(frozen=True)
class RelionTomogram:
    """One tomogram of the project: ``shape_zyx`` (voxels), ``voxel_size_a``, its volume ``path``; optics or None."""

    name: str
    shape_zyx: tuple[int, int, int]
    voxel_size_a: float
    path: Path
    voltage_kv: float | None = None
    cs_mm: float | None = None
    amplitude_contrast: float | None = None


def _write_star(path: Path, blocks: dict) -> Path:
    with atomic_output(path) as tmp:
        starfile.write(blocks, tmp, float_format="%.10g")
    return path


def _tomograms_table(tomograms: Sequence[RelionTomogram]) -> pd.DataFrame:
    rows = []
    for i, t in enumerate(tomograms):
        z, y, x = t.shape_zyx
        rows.append({"rlnTomoName": t.name, "rlnTomoSizeX": int(x), "rlnTomoSizeY": int(y), "rlnTomoSizeZ": int(z),
                     "rlnTomoTiltSeriesPixelSize": float(t.voxel_size_a), "rlnTomoTomogramBinning": 1.0,
                     "rlnOpticsGroupName": f"opticsGroup{i + 1}", "rlnTomoReconstructedTomogram": str(t.path)})  # fmt: skip
    table = pd.DataFrame(rows)
    for field, column in _OPTICS:
        values = [getattr(t, field) for t in tomograms]
        if all(v is not None for v in values):
            table[column] = [float(v) for v in values]
    return table


def write_relion5_project(folder: str | os.PathLike[str], tomograms: Sequence[RelionTomogram], particles: ParticleTable) -> dict[str, Path]:
    """Write the three files (module docstring) into ``folder``; ``particles`` hold 0-based voxel coordinates
    ``rlnCoordinateX/Y/Z`` of their tomogram (``rlnTomoName``, one of ``tomograms``). Returns the paths by role."""
    if not tomograms:
        raise InputError("a RELION project needs at least one tomogram", folder)
    names = [t.name for t in tomograms]
    if len(set(names)) != len(names):
        raise InputError("tomogram names must be unique", folder)
    frame = particles.particles
    if not set(COORDINATE_COLUMNS) <= set(frame.columns) or "rlnTomoName" not in frame:
        raise InputError("particles need rlnCoordinateX/Y/Z and rlnTomoName", folder)
    by_name = {t.name: t for t in tomograms}
    tomo_of = frame["rlnTomoName"].astype(str).to_numpy()
    unknown = sorted(set(tomo_of) - set(by_name))
    if unknown:
        raise InputError(f"particles of tomograms not in the project: {', '.join(unknown[:5])}", folder)
    xyz = coordinates_xyz_voxels(particles)
    size = np.array([by_name[n].shape_zyx[::-1] for n in tomo_of], np.float64).reshape(-1, 3)
    pixel = np.array([by_name[n].voxel_size_a for n in tomo_of], np.float64)
    centred = (xyz - size / 2.0) * pixel[:, None]
    out_frame = frame.drop(columns=[c for c in (*COORDINATE_COLUMNS, "rlnOpticsGroup") if c in frame.columns]).copy()
    for axis, column in enumerate(CENTERED_COLUMNS):
        out_frame[column] = centred[:, axis]
    out_frame["rlnOpticsGroup"] = [names.index(n) + 1 for n in tomo_of]
    tomo_table = _tomograms_table(tomograms)
    optics = pd.DataFrame({"rlnOpticsGroup": np.arange(1, len(tomograms) + 1), "rlnOpticsGroupName": tomo_table["rlnOpticsGroupName"],
                           "rlnTomoTiltSeriesPixelSize": tomo_table["rlnTomoTiltSeriesPixelSize"],
                           "rlnImagePixelSize": tomo_table["rlnTomoTiltSeriesPixelSize"]})  # fmt: skip
    for _, column in _OPTICS:
        if column in tomo_table:
            optics[column] = tomo_table[column].to_numpy()
    folder = Path(folder)
    paths = {"tomograms": _write_star(folder / "tomograms.star", {"global": tomo_table}),
             "particles": _write_star(folder / "particles.star", {"optics": optics, "particles": out_frame})}  # fmt: skip
    paths["optimisation_set"] = _write_star(folder / "optimisation_set.star", {
        "": {"rlnTomoParticlesFile": paths["particles"].name, "rlnTomoTomogramsFile": paths["tomograms"].name}})
    return paths

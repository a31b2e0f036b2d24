"""Non-RELION particle lists: SHREC challenge lists (``class c1 c2 c3 [a1 a2 a3]``) and ``x,y,z`` CSV files.

Both are read into a RELION-style :class:`~cryomine.io.star.ParticleTable` (see :mod:`cryomine.io.star` for the
columns).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from cryomine.errors import InputError
from cryomine.geometry.euler import euler_zyz_to_matrix, matrix_to_euler_zyz, xyz_to_zyx_matrix
from cryomine.io.em import zxz_to_relion_zyz
from cryomine.io.star import ANGLE_COLUMNS, COORDINATE_COLUMNS, ParticleTable, make_particles

__all__ = [
    "SHREC2019_LAYOUT",
    "ShrecLayout",
    "read_coordinates_csv",
    "read_shrec_particles",
]


@dataclass(frozen=True)
class ShrecLayout:
    """Column layout of a SHREC particle list ``class c1 c2 c3 [a1 a2 a3]``.

    ``coordinate_order``: which axes ``c1 c2 c3`` are (``"xyz"`` or ``"zyx"``; MRC axes, voxels).
    ``angle_order``: the TOM/PyTom ZXZ angle names of ``a1 a2 a3``, a permutation of ``phi``, ``psi``,
    ``theta``. The angles rotate the particle in the file's own ``(c1, c2, c3)`` frame (see
    :func:`read_shrec_particles`).
    """

    coordinate_order: str = "xyz"
    angle_order: tuple[str, str, str] = ("phi", "psi", "theta")

    def __post_init__(self) -> None:
        if self.coordinate_order not in ("xyz", "zyx"):
            raise InputError(f"coordinate_order must be 'xyz' or 'zyx', got {self.coordinate_order!r}")
        if sorted(self.angle_order) != ["phi", "psi", "theta"]:
            raise InputError(f"angle_order must be a permutation of phi, psi, theta, got {self.angle_order!r}")


#: SHREC 2019: its generator (PyTom) wrote ``class x y z z1 x z2`` in PyTom's array-index frame, whose first
#: axis (200 voxels) is the MRC z axis of the published volumes: coordinates (z, y, x), angles (phi, theta, psi).
SHREC2019_LAYOUT = ShrecLayout(coordinate_order="zyx", angle_order=("phi", "theta", "psi"))


def read_shrec_particles(path: str | os.PathLike[str], layout: ShrecLayout = ShrecLayout()) -> ParticleTable:
    """Read a whitespace-separated SHREC particle list (``class c1 c2 c3`` plus optionally 3 ZXZ angles).

    Returns ``rlnClassName`` (the class / PDB id, a string), ``rlnCoordinateX/Y/Z`` (voxels) and, when the file
    has angles, ``rlnAngleRot/Tilt/Psi`` converted with :func:`cryomine.io.em.zxz_to_relion_zyz` (for
    ``coordinate_order="zyx"`` the rotation is moved to the (x, y, z) frame by reversing its axes). Objects
    without an orientation (all three angles NaN, e.g. SHREC 2021 vesicles and fiducials) get angles 0.
    The default layout is ``class x y z phi psi theta``; use :data:`SHREC2019_LAYOUT` for SHREC 2019 files.
    """
    p = Path(path)
    raw = _read_table(p, sep=r"\s+")
    if raw.shape[1] not in (4, 7):
        raise InputError(f"SHREC list needs 4 or 7 columns (class c1 c2 c3 [a1 a2 a3]), found {raw.shape[1]}", p)
    coords = _numeric(raw.iloc[:, 1:4], p, "coordinates")
    if not np.isfinite(coords).all():
        raise InputError("coordinates contain NaN/inf", p)
    xyz = coords[:, ::-1] if layout.coordinate_order == "zyx" else coords
    cols: dict[str, ArrayLike] = {"rlnClassName": raw.iloc[:, 0].astype(str).to_numpy()}
    cols.update(zip(COORDINATE_COLUMNS, xyz.T, strict=True))
    if raw.shape[1] == 7:
        ang = _numeric(raw.iloc[:, 4:7], p, "angles")
        unknown = np.isnan(ang).all(axis=1)
        if not np.isfinite(ang[~unknown]).all():
            raise InputError("angles contain NaN/inf in rows that have other angles", p)
        ang[unknown] = 0.0
        order = [layout.angle_order.index(name) for name in ("phi", "psi", "theta")]
        zyz = zxz_to_relion_zyz(ang[:, order])
        if layout.coordinate_order == "zyx":
            zyz = matrix_to_euler_zyz(xyz_to_zyx_matrix(euler_zyz_to_matrix(zyz)))
        cols.update(zip(ANGLE_COLUMNS, zyz.T, strict=True))
    return ParticleTable(particles=pd.DataFrame(cols))


def read_coordinates_csv(path: str | os.PathLike[str], tomo_name: str | None = None) -> ParticleTable:
    """Read ``x,y,z`` voxel coordinates (comma-separated, optional header) into a :class:`ParticleTable`."""
    p = Path(path)
    raw = _read_table(p, sep=",")
    if raw.shape[1] < 3:
        raise InputError(f"expected at least 3 comma-separated columns (x, y, z), found {raw.shape[1]}", p)
    if pd.isna(pd.to_numeric(raw.iloc[0, 0], errors="coerce")):  # header line
        header = [str(v).strip().lower() for v in raw.iloc[0]]
        raw = raw.iloc[1:]
        picks = [header.index(a) for a in "xyz"] if set("xyz") <= set(header) else [0, 1, 2]
        raw = raw.iloc[:, picks]
    coords = _numeric(raw.iloc[:, :3], p, "coordinates")
    if not np.isfinite(coords).all():
        raise InputError("coordinates contain NaN/inf", p)
    return make_particles(coords, tomo_name=tomo_name)


# ---------------------------------------------------------------------------------------------------- helpers


def _read_table(p: Path, sep: str) -> pd.DataFrame:
    if not p.is_file():
        raise InputError("file not found" if not p.exists() else "not a file", p)
    try:
        raw = pd.read_csv(p, sep=sep, header=None, dtype=str, skip_blank_lines=True, engine="python")
    except pd.errors.EmptyDataError:
        raise InputError("empty file", p) from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"not a readable particle list ({str(exc)[:200]})", p) from None
    if raw.empty:
        raise InputError("empty file", p)
    return raw


def _numeric(frame: pd.DataFrame, p: Path, what: str) -> np.ndarray:
    values = np.array(frame.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64))
    bad = np.isnan(values) & ~frame.isna().to_numpy()  # pandas already parsed "NaN"/"nan" as missing
    if bad.any():
        r, c = (int(v[0]) for v in np.nonzero(bad))
        raise InputError(f"{what} are not numeric (line {r + 1}: {frame.iat[r, c]!r})", p)
    return values

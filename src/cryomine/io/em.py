"""TOM / PyTom / AV3 ``.em`` files: volumes and motive lists (particle tables).

File layout
-----------
A 512-byte header, then the data:

- byte 0: machine code (6 = PC, little-endian; 0 = OS-9, 3 = SGI, 5 = Mac: big-endian),
- byte 3: data type code: 1 int8, 2 int16, 4 int32, 5 float32, 8 complex64, 9 float64,
- bytes 4..16: dimensions ``(nx, ny, nz)`` as three int32,
- bytes 16..96 comment, 96..256 forty int32 parameters, 256..512 user data (all ignored here),

followed by ``nx * ny * nz`` values with x varying fastest, which is a C-ordered ``(nz, ny, nx)`` array, i.e.
cryomine's ``(z, y, x)`` order. The header's pixel-size parameter is rarely set by the tools that write these
files, so :func:`read_em` returns a voxel size of 1 Å unless the caller passes the real one.

Motive lists
------------
A TOM motive list ("motl") is an ``.em`` array with ``nx = 20`` fields per particle, ``ny = N`` particles,
``nz = 1``. :data:`MOTL_COLUMNS` names the 20 rows (1-based TOM rows in brackets) as cryoCAT does:
``score`` (1, cross-correlation), ``geom1``, ``geom2`` (2-3, free), ``subtomo_id`` (4), ``tomo_id`` (5),
``object_id`` (6), ``subtomo_mean`` (7), ``x``, ``y``, ``z`` (8-10, particle position in the tomogram, voxels,
MATLAB 1-based), ``shift_x``, ``shift_y``, ``shift_z`` (11-13, shift of the rotated reference, voxels; the
particle centre is position + shift), ``geom3``-``geom5`` (14-16, free), ``phi``, ``psi``, ``theta`` (17-19,
degrees) and ``class`` (20).

Angles
------
TOM/PyTom angles ``(phi, psi, theta)`` are ZXZ Euler angles. The rotation that takes the reference into the
particle is (acting on ``(x, y, z)`` column vectors, standard right-handed elementary rotations)::

    R = Rz(psi) @ Rx(theta) @ Rz(phi)  ==  scipy Rotation.from_euler("zxz", [phi, theta, psi]).as_matrix()

(lower-case "zxz": extrinsic, i.e. first phi about z, then theta about the fixed x axis, then psi about the fixed
z axis). This is the convention of cryoCAT, which rotates references with exactly this scipy call and whose
EM <-> RELION motl conversions (both directions) are equivalent to the one here (a test checks this). Note that
scipy's intrinsic ``"ZXZ"`` with ``(phi, theta, psi)``, i.e. ``Rz(phi) Rx(theta) Rz(psi)``, is a different
rotation and is not used. The RELION matrix ``A`` of :mod:`cryomine.geometry.euler` also rotates the reference
into the particle, so the RELION angles are ``matrix_to_euler_zyz(R)``: :func:`zxz_to_relion_zyz` and
:func:`relion_zyz_to_zxz` implement this and are shared with the SHREC reader in :mod:`cryomine.io.particle_lists`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.spatial.transform import Rotation

from cryomine.errors import InputError
from cryomine.geometry.euler import euler_zyz_to_matrix, matrix_to_euler_zyz
from cryomine.geometry.validate import check_volume, check_voxel_size
from cryomine.io.mrc import Volume

__all__ = [
    "EM_HEADER_BYTES",
    "MOTL_COLUMNS",
    "motl_to_particles",
    "read_em",
    "read_em_array",
    "read_motl",
    "relion_zyz_to_zxz",
    "zxz_to_relion_zyz",
]

EM_HEADER_BYTES = 512

#: numpy dtypes of the .em data type codes (byte 3 of the header)
_EM_DTYPES: dict[int, str] = {1: "i1", 2: "i2", 4: "i4", 5: "f4", 8: "c8", 9: "f8"}
_LITTLE_ENDIAN_MACHINES = {6}
_BIG_ENDIAN_MACHINES = {0, 3, 5}

#: the 20 fields of a TOM motive list, in row order (cryoCAT's names)
MOTL_COLUMNS: tuple[str, ...] = (
    "score",
    "geom1",
    "geom2",
    "subtomo_id",
    "tomo_id",
    "object_id",
    "subtomo_mean",
    "x",
    "y",
    "z",
    "shift_x",
    "shift_y",
    "shift_z",
    "geom3",
    "geom4",
    "geom5",
    "phi",
    "psi",
    "theta",
    "class",
)


def read_em_array(path: str | os.PathLike[str]) -> np.ndarray:
    """Read the raw data of an ``.em`` file as a ``(nz, ny, nx)`` array in its stored dtype (native byte order).

    Raises :class:`InputError` naming the file when it is missing, shorter than its header says, has an
    unknown machine or data type code, or non-positive dimensions. No finiteness check is done here.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError("file not found" if not p.exists() else "not a file", p)
    try:
        with open(p, "rb") as fh:
            header = fh.read(EM_HEADER_BYTES)
            if len(header) < EM_HEADER_BYTES:
                raise InputError(
                    f"truncated .em file: {len(header)} bytes, shorter than the {EM_HEADER_BYTES}-byte header", p
                )
            machine, type_code = header[0], header[3]
            if machine in _LITTLE_ENDIAN_MACHINES:
                order = "<"
            elif machine in _BIG_ENDIAN_MACHINES:
                order = ">"
            else:
                raise InputError(f"not a readable .em file: unknown machine code {machine} in byte 0", p)
            if type_code not in _EM_DTYPES:
                raise InputError(
                    f"not a readable .em file: unknown data type code {type_code} in byte 3 "
                    f"(known: {sorted(_EM_DTYPES)})",
                    p,
                )
            nx, ny, nz = (int(v) for v in np.frombuffer(header[4:16], dtype=order + "i4"))
            if min(nx, ny, nz) <= 0:
                raise InputError(f"not a readable .em file: dimensions (x, y, z) = {(nx, ny, nz)}", p)
            dtype = np.dtype(order + _EM_DTYPES[type_code])
            count = nx * ny * nz
            expected = count * dtype.itemsize
            held = p.stat().st_size - EM_HEADER_BYTES  # checked before reading: a corrupt header can claim TBs
            if held < expected:
                raise InputError(
                    f"truncated .em file: header says {nx} x {ny} x {nz} {dtype.name} values "
                    f"({expected} bytes of data), file holds {held}",
                    p,
                )
            payload = fh.read(expected)
    except OSError as exc:
        raise InputError(f"cannot read .em file ({exc.strerror or exc})", p) from None
    data = np.frombuffer(payload, dtype=dtype, count=count).reshape(nz, ny, nx)
    return data.astype(dtype.newbyteorder("="), copy=True)


def read_em(path: str | os.PathLike[str], voxel_size_a: float | None = None) -> Volume:
    """Read a TOM/PyTom ``.em`` volume as a float32 ``(d, h, w)`` = ``(nz, ny, nx)`` :class:`Volume`.

    ``voxel_size_a`` (Å) defaults to 1.0 because the ``.em`` header's pixel size is rarely set; pass the real
    one when known. The origin is ``(0, 0, 0)``. Raises :class:`InputError` naming the file for a missing,
    truncated or unreadable file, complex data, or NaN/inf voxels.
    """
    p = Path(path)
    vs = 1.0 if voxel_size_a is None else check_voxel_size(voxel_size_a, p)
    raw = read_em_array(p)
    if np.iscomplexobj(raw):
        raise InputError(f"complex .em data ({raw.dtype}) is not a density volume", p)
    return Volume(data=check_volume(raw, p), voxel_size_a=vs)


def read_motl(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a TOM motive list (an ``.em`` array of 20 x N x 1) into a DataFrame with :data:`MOTL_COLUMNS`.

    Returns one float64 row per particle, values as stored (positions/shifts in voxels, angles in degrees).
    Raises :class:`InputError` naming the file for a bad ``.em`` file, a shape other than 20 x N x 1, or
    NaN/inf values in the position, shift or angle fields.
    """
    p = Path(path)
    raw = read_em_array(p)
    nz, ny, nx = raw.shape
    if nx != len(MOTL_COLUMNS) or nz != 1:
        raise InputError(
            f"not a TOM motive list: expected {len(MOTL_COLUMNS)} x N x 1 (x, y, z), got {nx} x {ny} x {nz}", p
        )
    if np.iscomplexobj(raw):
        raise InputError(f"motive list has complex dtype {raw.dtype}", p)
    df = pd.DataFrame(raw[0].astype(np.float64), columns=list(MOTL_COLUMNS))
    _check_motl_finite(df, p)
    return df


def _check_motl_finite(df: pd.DataFrame, source: str | os.PathLike[str] | None) -> None:
    cols = ["x", "y", "z", "shift_x", "shift_y", "shift_z", "phi", "psi", "theta"]
    vals = df[cols].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(vals)
    if bad.any():
        row = int(np.nonzero(bad.any(axis=1))[0][0])
        raise InputError(
            f"motive list has {int(bad.sum())} NaN/inf values in positions, shifts or angles (first at particle {row})",
            source,
        )


def zxz_to_relion_zyz(angles_phi_psi_theta: ArrayLike) -> np.ndarray:
    """Convert TOM/PyTom ZXZ angles ``(phi, psi, theta)`` (degrees) to RELION ``(rot, tilt, psi)`` (degrees).

    ``(..., 3)`` in, ``(..., 3)`` out. Both describe the same rotation of the reference into the particle:
    ``euler_zyz_to_matrix(out) == Rotation.from_euler("zxz", [phi, theta, psi], degrees=True).as_matrix()``
    (see the module docstring). Raises :class:`InputError` for a wrong shape or non-finite angles.
    """
    ang = _angles3(angles_phi_psi_theta, "ZXZ angles (phi, psi, theta)")
    flat = ang.reshape(-1, 3)
    matrices = Rotation.from_euler("zxz", flat[:, [0, 2, 1]], degrees=True).as_matrix()
    return matrix_to_euler_zyz(matrices).reshape(ang.shape)


def relion_zyz_to_zxz(angles_zyz: ArrayLike) -> np.ndarray:
    """Inverse of :func:`zxz_to_relion_zyz`: RELION ``(rot, tilt, psi)`` -> TOM ``(phi, psi, theta)``, degrees.

    Returns ``theta`` in ``[0, 180]`` and ``phi``, ``psi`` in ``[-180, 180]``.
    """
    ang = _angles3(angles_zyz, "RELION angles (rot, tilt, psi)")
    flat = ang.reshape(-1, 3)
    with warnings.catch_warnings():  # gimbal lock (theta = 0 or 180): scipy puts the whole angle in phi
        warnings.simplefilter("ignore", UserWarning)
        zxz = Rotation.from_matrix(euler_zyz_to_matrix(flat)).as_euler("zxz", degrees=True)  # (phi, theta, psi)
    return zxz[:, [0, 2, 1]].reshape(ang.shape)


def _angles3(values: ArrayLike, name: str) -> np.ndarray:
    try:
        ang = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be numeric") from None
    if ang.ndim == 0 or ang.shape[-1] != 3:
        raise InputError(f"{name} must have shape (..., 3), got shape {ang.shape}")
    if not np.isfinite(ang).all():
        raise InputError(f"{name} contain {int((~np.isfinite(ang)).sum())} non-finite values")
    return ang


def motl_to_particles(motl: pd.DataFrame, voxel_size_a: float = 1.0) -> pd.DataFrame:
    """Convert a motive list (from :func:`read_motl`) to a DataFrame with RELION particle column names.

    Columns written: ``rlnCoordinateX/Y/Z`` (the motl ``x, y, z`` in voxels, copied unchanged, so still TOM's
    1-based values), ``rlnOriginX/Y/ZAngst`` (``-shift * voxel_size_a``: RELION's origin is subtracted from the
    coordinate, TOM's shift is added), ``rlnAngleRot/Tilt/Psi`` (from ``phi, psi, theta`` with
    :func:`zxz_to_relion_zyz`), ``rlnTomoName`` (the ``tomo_id`` as an integer string), ``rlnTomoParticleId``
    (``subtomo_id``), ``rlnClassNumber`` (``class``) and ``rlnLCCmax`` (``score``).
    ``voxel_size_a`` (Å) is only used for the origins.
    """
    missing = [c for c in MOTL_COLUMNS if c not in motl.columns]
    if missing:
        raise InputError(f"motive list lacks columns {missing}")
    vs = check_voxel_size(voxel_size_a, "voxel_size_a")
    _check_motl_finite(motl, "motive list")
    xyz = motl[["x", "y", "z"]].to_numpy(dtype=np.float64)
    shifts = motl[["shift_x", "shift_y", "shift_z"]].to_numpy(dtype=np.float64)
    eulers = zxz_to_relion_zyz(motl[["phi", "psi", "theta"]].to_numpy(dtype=np.float64))
    out = pd.DataFrame(
        {
            "rlnCoordinateX": xyz[:, 0],
            "rlnCoordinateY": xyz[:, 1],
            "rlnCoordinateZ": xyz[:, 2],
            "rlnOriginXAngst": -shifts[:, 0] * vs,
            "rlnOriginYAngst": -shifts[:, 1] * vs,
            "rlnOriginZAngst": -shifts[:, 2] * vs,
            "rlnAngleRot": eulers[:, 0],
            "rlnAngleTilt": eulers[:, 1],
            "rlnAnglePsi": eulers[:, 2],
            "rlnTomoName": [_int_name(v) for v in motl["tomo_id"].to_numpy()],
            "rlnTomoParticleId": _as_int(motl["subtomo_id"]),
            "rlnClassNumber": _as_int(motl["class"]),
            "rlnLCCmax": motl["score"].to_numpy(dtype=np.float64),
        }
    )
    return out


def _int_name(v: float) -> str:
    return str(int(v)) if np.isfinite(v) and float(v).is_integer() else str(v)


def _as_int(col: pd.Series) -> np.ndarray:
    vals = col.to_numpy(dtype=np.float64)
    if np.isfinite(vals).all() and np.all(vals == np.round(vals)):
        return vals.astype(np.int64)
    return vals

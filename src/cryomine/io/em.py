"""TOM / PyTom / AV3 ``.em`` files: volumes and motive lists (particle tables).

File layout
-----------
A 512-byte header, then the data:

- byte 0: machine code (6 = PC, little-endian; 0 = OS-9, 3 = SGI, 5 = Mac: big-endian),
- byte 3: data type code: 1 int8, 2 int16, 4 int32, 5 float32, 8 complex64, 9 float64,
- bytes 4..16: dimensions ``(nx, ny, nz)`` as three int32,
- bytes 16..96 comment, 96..256 forty int32 parameters, 256..512 user data,

followed by ``nx * ny * nz`` values with x varying fastest, which is a C-ordered ``(nz, ny, nx)`` array, i.e.
cryomine's ``(z, y, x)`` order. Of the parameters only the 7th (``OBJ``, the pixel size in the object plane in
units of 1/1000 Å, as TOM's ``tom_emread`` documents) is used: :func:`em_voxel_size_a` returns it, or None when
it is 0, which it is in most files (all the cryoCAT files checked). :func:`read_em` then returns 1 Å unless the
caller passes the real voxel size; :func:`cryomine.io.volume.read_volume` refuses to guess.

Motive lists
------------
A TOM motive list ("motl") is an ``.em`` array with ``nx = 20`` fields per particle, ``ny = N`` particles,
``nz = 1``. :data:`MOTL_COLUMNS` names the 20 rows (1-based TOM rows in brackets) as cryoCAT does:
``score`` (1, cross-correlation), ``geom1``, ``geom2`` (2-3, free), ``subtomo_id`` (4), ``tomo_id`` (5),
``object_id`` (6), ``subtomo_mean`` (7), ``x``, ``y``, ``z`` (8-10, particle position in the tomogram, voxels,
MATLAB 1-based: the first voxel is 1), ``shift_x``, ``shift_y``, ``shift_z`` (11-13, shift of the rotated
reference, voxels; the particle centre is position + shift), ``geom3``-``geom5`` (14-16, free), ``phi``, ``psi``, ``theta`` (17-19,
degrees) and ``class`` (20).

:func:`motl_to_particles` converts to cryomine's 0-based voxel coordinates (:mod:`cryomine.io.star`)::

    coordinate = (position - 1 + shift) / binning

``binning`` is the ratio of the target tomogram's voxel size to the motive list's (4 for a bin-1 list used
with a bin-4 tomogram). Plain division is RELION 5's own convention for binned tomograms (see
:func:`cryomine.io.star.coordinates_xyz_voxels`), so the tomogram centre maps to the binned centre.

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
from typing import BinaryIO

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.spatial.transform import Rotation

from cryomine.errors import InputError
from cryomine.geometry.euler import euler_zyz_to_matrix, matrix_to_euler_zyz
from cryomine.geometry.validate import check_volume, check_voxel_size
from cryomine.io.atomic import atomic_output
from cryomine.io.mrc import Volume

__all__ = [
    "EM_HEADER_BYTES",
    "MOTL_COLUMNS",
    "em_voxel_size_a",
    "motl_to_particles",
    "motl_tomo_names",
    "read_em",
    "read_em_array",
    "read_motl",
    "relion_zyz_to_zxz",
    "write_em",
    "write_motl",
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
    try:
        with open(_existing(p), "rb") as fh:
            dtype, (nx, ny, nz), _ = _read_header(fh, p)
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


def em_voxel_size_a(path: str | os.PathLike[str]) -> float | None:
    """The voxel size (Å) stored in an ``.em`` header (parameter 7, ``OBJ``, in 1/1000 Å), None when it is 0.

    Raises :class:`InputError` naming the file for a missing file or an unreadable header.
    """
    p = Path(path)
    try:
        with open(_existing(p), "rb") as fh:
            _, _, params = _read_header(fh, p)
    except OSError as exc:
        raise InputError(f"cannot read .em file ({exc.strerror or exc})", p) from None
    return float(params[6]) / 1000.0 if params[6] > 0 else None


def write_em(path: str | os.PathLike[str], data: np.ndarray, voxel_size_a: float | None = None) -> Path:
    """Write a ``(nz, ny, nx)`` array as a little-endian (PC) ``.em`` file, atomically.

    The dtype is kept when it is one of int8, int16, int32, float32, complex64, float64 (others are written
    as float32). ``voxel_size_a`` (Å) goes into header parameter 7 (1/1000 Å units) when given.
    """
    arr = np.asarray(data)
    if arr.ndim != 3 or 0 in arr.shape:
        raise InputError(f".em data must be a non-empty 3-D (z, y, x) array, got shape {arr.shape}", path)
    codes = {np.dtype(v): k for k, v in _EM_DTYPES.items()}
    if arr.dtype.newbyteorder("=") not in codes:
        arr = arr.astype(np.float32)
    dtype = arr.dtype.newbyteorder("=")
    header = bytearray(EM_HEADER_BYTES)
    header[0], header[3] = 6, codes[dtype]
    header[4:16] = np.array(arr.shape[::-1], dtype="<i4").tobytes()
    if voxel_size_a is not None:
        header[96 + 6 * 4 : 96 + 7 * 4] = np.array([round(check_voxel_size(voxel_size_a, path) * 1000)], "<i4").tobytes()
    p = Path(path)
    with atomic_output(p) as tmp:
        tmp.write_bytes(bytes(header) + np.ascontiguousarray(arr, dtype=dtype.newbyteorder("<")).tobytes())
    return p


def _existing(p: Path) -> Path:
    if not p.is_file():
        raise InputError("file not found" if not p.exists() else "not a file", p)
    return p


def _read_header(fh: BinaryIO, p: Path) -> tuple[np.dtype, tuple[int, int, int], np.ndarray]:
    """Parse the 512-byte header: (data dtype with byte order, (nx, ny, nz), the 40 int32 parameters)."""
    header = fh.read(EM_HEADER_BYTES)
    if len(header) < EM_HEADER_BYTES:
        raise InputError(f"truncated .em file: {len(header)} bytes, shorter than the {EM_HEADER_BYTES}-byte header", p)
    machine, type_code = header[0], header[3]
    if machine in _LITTLE_ENDIAN_MACHINES:
        order = "<"
    elif machine in _BIG_ENDIAN_MACHINES:
        order = ">"
    else:
        raise InputError(f"not a readable .em file: unknown machine code {machine} in byte 0", p)
    if type_code not in _EM_DTYPES:
        raise InputError(
            f"not a readable .em file: unknown data type code {type_code} in byte 3 (known: {sorted(_EM_DTYPES)})", p
        )
    nx, ny, nz = (int(v) for v in np.frombuffer(header[4:16], dtype=order + "i4"))
    if min(nx, ny, nz) <= 0:
        raise InputError(f"not a readable .em file: dimensions (x, y, z) = {(nx, ny, nz)}", p)
    params = np.frombuffer(header[96:256], dtype=order + "i4").astype(np.int64)
    return np.dtype(order + _EM_DTYPES[type_code]), (nx, ny, nz), params


def read_em(path: str | os.PathLike[str], voxel_size_a: float | None = None) -> Volume:
    """Read a TOM/PyTom ``.em`` volume as a float32 ``(d, h, w)`` = ``(nz, ny, nx)`` :class:`Volume`.

    ``voxel_size_a`` (Å) defaults to the header's (:func:`em_voxel_size_a`), else to 1.0 because the ``.em``
    header's pixel size is rarely set; pass the real one when known (or use
    :func:`cryomine.io.volume.read_volume`, which never assumes 1 Å). The origin is ``(0, 0, 0)``.
    Raises :class:`InputError` naming the file for a missing,
    truncated or unreadable file, complex data, or NaN/inf voxels.
    """
    p = Path(path)
    vs = check_voxel_size(voxel_size_a, p) if voxel_size_a is not None else (em_voxel_size_a(p) or 1.0)
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


def motl_to_particles(motl: pd.DataFrame, *, binning: float = 1.0, tomo_name: str | None = None) -> pd.DataFrame:
    """Convert a motive list (from :func:`read_motl`) to a DataFrame with RELION particle column names.

    Columns written: ``rlnCoordinateX/Y/Z`` = ``(x - 1 + shift_x) / binning`` etc.: TOM's 1-based positions
    with the refined shifts applied, as 0-based voxels of a tomogram ``binning`` times coarser than the motive
    list's (see the module docstring); ``rlnAngleRot/Tilt/Psi`` (from ``phi, psi, theta`` with
    :func:`zxz_to_relion_zyz`), ``rlnTomoName`` (:func:`motl_tomo_names` of ``tomo_id`` and ``tomo_name``),
    ``rlnTomoParticleId`` (``subtomo_id``), ``rlnClassNumber`` (``class``) and ``rlnLCCmax`` (``score``).
    No origin columns: the shifts are already in the coordinates.
    """
    missing = [c for c in MOTL_COLUMNS if c not in motl.columns]
    if missing:
        raise InputError(f"motive list lacks columns {missing}")
    factor = _binning(binning)
    _check_motl_finite(motl, "motive list")
    xyz = motl[["x", "y", "z"]].to_numpy(dtype=np.float64)
    shifts = motl[["shift_x", "shift_y", "shift_z"]].to_numpy(dtype=np.float64)
    coords = (xyz - 1.0 + shifts) / factor
    eulers = zxz_to_relion_zyz(motl[["phi", "psi", "theta"]].to_numpy(dtype=np.float64))
    return pd.DataFrame(
        {
            "rlnCoordinateX": coords[:, 0],
            "rlnCoordinateY": coords[:, 1],
            "rlnCoordinateZ": coords[:, 2],
            "rlnAngleRot": eulers[:, 0],
            "rlnAngleTilt": eulers[:, 1],
            "rlnAnglePsi": eulers[:, 2],
            "rlnTomoName": motl_tomo_names(motl["tomo_id"].to_numpy(dtype=np.float64), tomo_name),
            "rlnTomoParticleId": _as_int(motl["subtomo_id"]),
            "rlnClassNumber": _as_int(motl["class"]),
            "rlnLCCmax": motl["score"].to_numpy(dtype=np.float64),
        }
    )


def motl_tomo_names(tomo_ids: ArrayLike, tomo_name: str | None = None) -> list[str]:
    """``rlnTomoName`` for each motive-list tomogram number.

    ``tomo_name`` None: the number itself (``"7"``); a pattern with ``{}`` (Python format, e.g. ``TS_{:03d}``
    -> ``TS_007``; ``{tomo_id}`` works too): the number put in; any other string: that name, allowed only when
    every particle has the same number. Raises :class:`InputError` naming ``--tomo-name`` otherwise.
    """
    ids = np.atleast_1d(np.asarray(tomo_ids, dtype=np.float64))
    names = [_int_name(v) for v in ids]
    if tomo_name is None:
        return names
    if not isinstance(tomo_name, str) or not tomo_name.strip() or any(c.isspace() for c in tomo_name):
        raise InputError(f"tomogram name must be a non-empty word without spaces, got {tomo_name!r}", "--tomo-name")
    if "{" not in tomo_name:
        if len(set(names)) > 1:
            raise InputError(
                f"the motive list holds {len(set(names))} tomograms (numbers {sorted(set(names))[:6]}): give a "
                f"pattern such as TS_{{:03d}} instead of one name {tomo_name!r}",
                "--tomo-name",
            )
        return [tomo_name] * len(names)
    out = []
    for v, name in zip(ids, names, strict=True):
        number = int(v) if float(v).is_integer() else float(v)
        try:
            out.append(tomo_name.format(number, tomo_id=number))
        except (ValueError, IndexError, KeyError, AttributeError) as exc:
            raise InputError(f"bad tomogram name pattern {tomo_name!r} for number {name} ({exc})", "--tomo-name") from None
    return out


def write_motl(path: str | os.PathLike[str], motl: pd.DataFrame) -> Path:
    """Write a motive list (a DataFrame with :data:`MOTL_COLUMNS`) as a float32 20 x N x 1 ``.em`` file."""
    missing = [c for c in MOTL_COLUMNS if c not in motl.columns]
    if missing:
        raise InputError(f"motive list lacks columns {missing}", path)
    values = motl[list(MOTL_COLUMNS)].to_numpy(dtype=np.float32)
    return write_em(path, values.reshape(1, len(motl), len(MOTL_COLUMNS)))


def _binning(binning: float) -> float:
    try:
        factor = float(binning)
    except (TypeError, ValueError):
        raise InputError(f"binning must be a number, got {binning!r}", "--binning") from None
    if not np.isfinite(factor) or factor <= 0:
        raise InputError(f"binning must be > 0, got {binning!r}", "--binning")
    return factor


def _int_name(v: float) -> str:
    return str(int(v)) if np.isfinite(v) and float(v).is_integer() else str(v)


def _as_int(col: pd.Series) -> np.ndarray:
    vals = col.to_numpy(dtype=np.float64)
    if np.isfinite(vals).all() and np.all(vals == np.round(vals)):
        return vals.astype(np.int64)
    return vals

"""RELION STAR particle lists (through ``starfile``); SHREC and CSV lists are in :mod:`cryomine.io.particle_lists`.

Columns (RELION names, kept as they are in a :class:`ParticleTable`):

- ``rlnCoordinateX/Y/Z``: position in voxels (RELION 3/4: pixels of the tilt series / tomogram the picker used;
  WarpTools 2-D-stack exports write them at the export pixel size ``rlnImagePixelSize``; see
  :func:`coordinates_xyz_voxels`). cryomine reads and writes them as **0-based** voxel indices of the
  tomogram (voxel ``(0, 0, 0)`` is the first voxel, as a numpy index; ``data[z, y, x]`` holds the particle at
  ``(x, y, z)``), at ``rlnImagePixelSize`` Å per voxel. TOM/PyTom motive lists are 1-based and are converted
  (:func:`cryomine.io.em.motl_to_particles`),
- ``rlnCenteredCoordinateX/Y/ZAngst`` (RELION 5): position in Å relative to the tomogram centre,
- ``rlnAngleRot/Tilt/Psi``: RELION ZYZ Euler angles in degrees (see :mod:`cryomine.geometry.euler`),
- ``rlnOriginX/Y/ZAngst``: shifts in Å (RELION subtracts them from the coordinate), ``rlnTomoName``,
  ``rlnClassNumber``; anything else is kept untouched, as are the other data blocks of the file.

Files without ``data_optics`` (RELION 3.0, other tools) are read as they are. Every file written by
:func:`write_particles` has one (:mod:`cryomine.io.optics`): ``rlnOpticsGroup``, ``rlnOpticsGroupName``,
``rlnImagePixelSize`` and whatever else is known, with ``rlnOpticsGroup`` in the particles block.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import starfile
from numpy.typing import ArrayLike

from cryomine.errors import InputError
from cryomine.io.atomic import atomic_output
from cryomine.io.optics import (
    PIXEL_SIZE,
    OpticsGroup,
    assign_optics_groups,
    merge_optics,
)

__all__ = [
    "ANGLE_COLUMNS",
    "CENTERED_COLUMNS",
    "COORDINATE_COLUMNS",
    "ORIGIN_COLUMNS",
    "ParticleTable",
    "coordinates_xyz_voxels",
    "eulers_zyz",
    "make_particles",
    "particles_pixel_size_a",
    "read_optimisation_set",
    "read_particles",
    "read_star",
    "read_tomograms",
    "with_optics",
    "write_particles",
]

COORDINATE_COLUMNS = ("rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ")
CENTERED_COLUMNS = ("rlnCenteredCoordinateXAngst", "rlnCenteredCoordinateYAngst", "rlnCenteredCoordinateZAngst")
ANGLE_COLUMNS = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")
ORIGIN_COLUMNS = ("rlnOriginXAngst", "rlnOriginYAngst", "rlnOriginZAngst")
_FLOAT_GROUPS = (COORDINATE_COLUMNS, CENTERED_COLUMNS, ANGLE_COLUMNS, ORIGIN_COLUMNS)
_FLOAT_FORMAT = "%.10g"


@dataclass(frozen=True, eq=False)
class ParticleTable:
    """A RELION particle list: the particles block plus the file's other blocks, for a lossless round trip.

    ``particles``: one row per particle, RELION column names; needs ``rlnCoordinateX/Y/Z`` or
    ``rlnCenteredCoordinateX/Y/ZAngst`` (finite numbers); angle and origin columns come in complete triples.
    ``optics``: the ``data_optics`` table or None. ``other_blocks``: any other blocks by name (tables or
    key-value dicts, e.g. ``general``), kept in file order. ``particles_block``: the name of the particles
    block (``"particles"``; ``""`` for RELION 3.0 files).
    """

    particles: pd.DataFrame
    optics: pd.DataFrame | None = None
    other_blocks: Mapping[str, pd.DataFrame | dict] = field(default_factory=dict)
    particles_block: str = "particles"

    def __post_init__(self) -> None:
        if not isinstance(self.particles, pd.DataFrame):
            raise InputError(f"particles must be a pandas DataFrame, got {type(self.particles).__name__}")
        if self.optics is not None and not isinstance(self.optics, pd.DataFrame):
            raise InputError(f"optics must be a pandas DataFrame or None, got {type(self.optics).__name__}")
        clash = {self.particles_block, "optics"} & set(self.other_blocks)
        if clash:
            raise InputError(f"other_blocks must not contain the particles/optics blocks, got {sorted(clash)}")
        _check_particles(self.particles, None)

    def __len__(self) -> int:
        return len(self.particles)


def _check_particles(df: pd.DataFrame, source: str | os.PathLike[str] | None) -> None:
    """Raise InputError unless ``df`` has complete, numeric, finite coordinate (and angle/origin) columns."""
    if not (set(COORDINATE_COLUMNS) <= set(df.columns) or set(CENTERED_COLUMNS) <= set(df.columns)):
        raise InputError(
            "no particle coordinates: needs columns rlnCoordinateX/Y/Z (voxels) or "
            f"rlnCenteredCoordinateX/Y/ZAngst, found {list(df.columns)[:12]}",
            source,
        )
    for group in _FLOAT_GROUPS:
        present = [c for c in group if c in df.columns]
        if present and len(present) != 3:
            raise InputError(f"incomplete column triple: has {present}, needs all of {list(group)}", source)
        for col in present:
            values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64)
            raw_missing = df[col].isna().to_numpy()
            if (np.isnan(values) & ~raw_missing).any():
                bad = df[col][np.isnan(values) & ~raw_missing].iloc[0]
                raise InputError(f"column {col} is not numeric (e.g. {bad!r})", source)
            if not np.isfinite(values).all():
                raise InputError(f"column {col} has {int((~np.isfinite(values)).sum())} NaN/inf values", source)


def read_particles(path: str | os.PathLike[str]) -> ParticleTable:
    """Read a RELION 3/4/5 particles STAR file into a :class:`ParticleTable` (all blocks and columns kept).

    The particles are the ``data_particles`` block, or else the first table with coordinate columns
    (RELION 3.0 files have a single ``data_`` block). Known float columns (coordinates, angles, origins) are
    returned as float64. Raises :class:`InputError` naming the file for a missing, empty or non-STAR file, no
    particle block, missing or non-numeric coordinates, or NaN/inf in coordinates, angles or origins.
    """
    p = Path(path)
    blocks = _read_star_blocks(p)
    name = "particles" if _has_coordinates(blocks.get("particles")) else None
    if name is None:
        name = next((k for k, v in blocks.items() if k != "optics" and _has_coordinates(v)), None)
    if name is None:
        hint = ""
        if any(isinstance(v, dict) and "rlnTomoParticlesFile" in v for v in blocks.values()):
            hint = " (this is a RELION optimisation set: read its rlnTomoParticlesFile, see read_optimisation_set)"
        raise InputError(
            f"no particle data block (data_particles with rlnCoordinateX/Y/Z or rlnCenteredCoordinateX/Y/ZAngst) "
            f"among blocks {list(blocks)}{hint}",
            p,
        )
    particles = blocks[name]
    if isinstance(particles, dict):  # a single particle written as key-value pairs
        particles = pd.DataFrame([particles])
    _check_particles(particles, p)
    particles = _floats(particles)
    optics = blocks.get("optics")
    optics = pd.DataFrame([optics]) if isinstance(optics, dict) else optics  # one group as key-value pairs
    others = {k: v for k, v in blocks.items() if k not in (name, "optics")}
    return ParticleTable(particles=particles, optics=optics, other_blocks=others, particles_block=name)


def write_particles(
    path: str | os.PathLike[str],
    table: ParticleTable,
    pixel_size_a: float | None = None,
    *,
    optics: OpticsGroup | None = None,
) -> Path:
    """Write ``table`` as a RELION 3.1+/5 particles STAR file atomically: other blocks, ``optics``, particles.

    The file always has a ``data_optics`` block (see :func:`with_optics`): ``pixel_size_a`` (Å per voxel of the
    coordinates) or ``optics`` is needed unless ``table.optics`` already has ``rlnImagePixelSize``; given values
    must agree with those in ``table.optics``. A RELION 3.0 table (particles block ``""``) is written as
    ``data_particles``. Raises :class:`InputError` naming ``path``; nothing is written then.
    """
    if not isinstance(table, ParticleTable):
        raise InputError(f"expected a ParticleTable, got {type(table).__name__}", path)
    _check_particles(table.particles, path)
    table = with_optics(table, pixel_size_a, optics=optics, source=path)
    blocks: dict[str, pd.DataFrame | dict] = dict(table.other_blocks)
    blocks["optics"] = table.optics  # type: ignore[assignment]
    blocks[table.particles_block] = table.particles
    p = Path(path)
    with atomic_output(p) as tmp:
        starfile.write(blocks, tmp, float_format=_FLOAT_FORMAT)
    return p


def with_optics(
    table: ParticleTable,
    pixel_size_a: float | None = None,
    *,
    optics: OpticsGroup | None = None,
    source: str | os.PathLike[str] | None = None,
) -> ParticleTable:
    """``table`` with a complete optics table and ``rlnOpticsGroup`` on every particle (what gets written).

    ``pixel_size_a`` is short for ``optics=OpticsGroup(pixel_size_a)``; giving both, they must agree. The
    given group's values fill columns missing from ``table.optics`` and must agree with those present
    (:func:`cryomine.io.optics.merge_optics`). The particles block is named ``particles``. Raises
    :class:`InputError` (naming ``source``) when the pixel size stays unknown or the tables disagree.
    """
    if pixel_size_a is not None:
        if optics is None:
            optics = OpticsGroup(pixel_size_a=pixel_size_a)
        elif not np.isclose(float(pixel_size_a), optics.pixel_size_a, rtol=1e-6, atol=0.0):
            raise InputError(f"pixel_size_a={pixel_size_a:g} disagrees with optics.pixel_size_a={optics.pixel_size_a:g}")
    opt = merge_optics(table.optics, optics, source)
    particles = assign_optics_groups(table.particles, opt, source)
    return ParticleTable(particles=particles, optics=opt, other_blocks=table.other_blocks, particles_block="particles")


def particles_pixel_size_a(table: ParticleTable) -> float | None:
    """The ``rlnImagePixelSize`` (Å) shared by every optics group of ``table``, or None when absent/different."""
    if table.optics is None or PIXEL_SIZE not in table.optics.columns or len(table.optics) == 0:
        return None
    values = pd.to_numeric(table.optics[PIXEL_SIZE], errors="coerce").to_numpy(dtype=np.float64)
    if not (np.isfinite(values).all() and (values > 0).all() and np.allclose(values, values[0], rtol=1e-9)):
        return None
    return float(values[0])


def read_tomograms(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a RELION 5 tomograms STAR file: the ``data_global`` table (one row per tomogram).

    Needs ``rlnTomoName`` and ``rlnTomoSizeX/Y/Z`` (unbinned tilt-series pixels); usually also holds
    ``rlnTomoTiltSeriesPixelSize`` (Å) and ``rlnTomoTomogramBinning``. Raises :class:`InputError` naming the
    file otherwise.
    """
    p = Path(path)
    blocks = _read_star_blocks(p)
    table = blocks.get("global")
    if not isinstance(table, pd.DataFrame):
        table = next((v for v in blocks.values() if isinstance(v, pd.DataFrame) and "rlnTomoName" in v), None)
    needed = ["rlnTomoName", "rlnTomoSizeX", "rlnTomoSizeY", "rlnTomoSizeZ"]
    if table is None or not set(needed) <= set(table.columns):
        raise InputError(f"not a RELION tomograms STAR file: needs a table with columns {needed}", p)
    for col in needed[1:] + [c for c in ("rlnTomoTiltSeriesPixelSize", "rlnTomoTomogramBinning") if c in table]:
        vals = pd.to_numeric(table[col], errors="coerce").to_numpy(dtype=np.float64)
        if not (np.isfinite(vals) & (vals > 0)).all():
            raise InputError(f"column {col} must hold positive numbers", p)
    return table


def read_optimisation_set(path: str | os.PathLike[str]) -> dict[str, Path]:
    """Read a RELION optimisation set: ``{label: path}`` (e.g. ``rlnTomoParticlesFile``, ``rlnTomoTomogramsFile``).

    RELION writes these paths relative to its project folder; a relative path is resolved against the
    optimisation set's own folder when the file exists there, and left as written otherwise.
    """
    p = Path(path)
    blocks = _read_star_blocks(p)
    pairs = {k: v for block in blocks.values() if isinstance(block, dict) for k, v in block.items()}
    files = {k: Path(str(v)) for k, v in pairs.items() if k.startswith("rlnTomo") and k.endswith("File")}
    if not files:
        raise InputError("not a RELION optimisation set: no rlnTomo...File entries", p)
    return {k: (p.parent / v if not v.is_absolute() and (p.parent / v).exists() else v) for k, v in files.items()}


def coordinates_xyz_voxels(
    table: ParticleTable, tomograms: pd.DataFrame | str | os.PathLike[str] | None = None
) -> np.ndarray:
    """Particle positions as an ``(n, 3)`` float64 array of ``(x, y, z)`` voxel coordinates.

    With ``rlnCoordinateX/Y/Z`` the stored values are returned unchanged (RELION 3/4 write them in the picker's
    pixels; WarpTools RELION 5 2-D-stack exports write them at ``rlnImagePixelSize``). Origins
    (``rlnOrigin*Angst``) are not applied. With RELION 5 ``rlnCenteredCoordinateX/Y/ZAngst`` the tomograms
    table (:func:`read_tomograms` or its path) is required and, per particle's ``rlnTomoName``::

        voxel = (centred_A / tilt_series_pixel_A + size / 2) / binning

    which is RELION 5's ``getParticleCoordDecenteredPixel`` (``size`` = ``rlnTomoSizeX/Y/Z`` in unbinned
    tilt-series pixels) followed by division by ``rlnTomoTomogramBinning`` (1 when absent), i.e. voxels of the
    reconstructed tomogram whose voxel size is ``tilt_series_pixel_A * binning``. The tilt-series pixel size is
    ``rlnTomoTiltSeriesPixelSize`` from the tomograms table, or else from the optics table.
    """
    df = table.particles
    if set(COORDINATE_COLUMNS) <= set(df.columns) and not set(CENTERED_COLUMNS) <= set(df.columns):
        return df[list(COORDINATE_COLUMNS)].to_numpy(dtype=np.float64).reshape(-1, 3)
    if tomograms is None:
        raise InputError("RELION 5 centred coordinates (rlnCenteredCoordinate*Angst) need the tomograms STAR table")
    tomos = tomograms if isinstance(tomograms, pd.DataFrame) else read_tomograms(tomograms)
    if "rlnTomoName" not in df.columns:
        raise InputError("particles lack rlnTomoName, needed to look up their tomograms")
    rows = tomos.set_index(tomos["rlnTomoName"].astype(str))
    names = df["rlnTomoName"].astype(str)
    unknown = sorted(set(names) - set(rows.index))
    if unknown:
        raise InputError(f"particles refer to tomograms missing from the tomograms table: {unknown[:5]}")
    size = rows.loc[names, ["rlnTomoSizeX", "rlnTomoSizeY", "rlnTomoSizeZ"]].to_numpy(dtype=np.float64)
    binning = (
        rows.loc[names, "rlnTomoTomogramBinning"].to_numpy(dtype=np.float64)
        if "rlnTomoTomogramBinning" in rows
        else np.ones(len(df))
    )
    if "rlnTomoTiltSeriesPixelSize" in rows:
        pixel = rows.loc[names, "rlnTomoTiltSeriesPixelSize"].to_numpy(dtype=np.float64)
    elif table.optics is not None and {"rlnOpticsGroup", "rlnTomoTiltSeriesPixelSize"} <= set(table.optics.columns):
        by_group = table.optics.set_index("rlnOpticsGroup")["rlnTomoTiltSeriesPixelSize"]
        pixel = by_group.reindex(df.get("rlnOpticsGroup", pd.Series(1, index=df.index))).to_numpy(np.float64)
    else:
        raise InputError("no rlnTomoTiltSeriesPixelSize in the tomograms or optics table")
    if not (np.isfinite(pixel) & (pixel > 0)).all():
        raise InputError("tilt-series pixel size must be > 0 for every particle")
    centred = df[list(CENTERED_COLUMNS)].to_numpy(dtype=np.float64)
    return (centred / pixel[:, None] + size / 2.0) / binning[:, None]


def eulers_zyz(table: ParticleTable) -> np.ndarray:
    """RELION ``(rot, tilt, psi)`` angles as an ``(n, 3)`` float64 array (degrees); zeros when absent."""
    df = table.particles
    if set(ANGLE_COLUMNS) <= set(df.columns):
        return df[list(ANGLE_COLUMNS)].to_numpy(dtype=np.float64).reshape(-1, 3)
    return np.zeros((len(df), 3))


def make_particles(
    coords_xyz: ArrayLike,
    eulers_zyz: ArrayLike | None = None,
    tomo_name: str | Sequence[str] | None = None,
    class_number: int | ArrayLike | None = None,
    extra: Mapping[str, ArrayLike] | None = None,
    *,
    pixel_size_a: float | None = None,
    optics: OpticsGroup | None = None,
) -> ParticleTable:
    """Build a :class:`ParticleTable` from arrays.

    ``coords_xyz``: ``(n, 3)`` 0-based voxel coordinates ``(x, y, z)`` -> ``rlnCoordinateX/Y/Z``;
    ``eulers_zyz``: ``(n, 3)`` RELION ``(rot, tilt, psi)`` degrees (omitted when None); ``tomo_name``: one name
    or n names (``rlnTomoName``); ``class_number``: one int or n ints (``rlnClassNumber``); ``extra``: more
    columns by RELION name, each n values. ``pixel_size_a`` (Å per voxel of the coordinates) or ``optics``
    adds the optics table and ``rlnOpticsGroup`` (:func:`with_optics`); without them the table has no optics
    and :func:`write_particles` needs the pixel size.
    """
    xyz = _array_n3(coords_xyz, "coords_xyz")
    n = len(xyz)
    cols: dict[str, ArrayLike] = dict(zip(COORDINATE_COLUMNS, xyz.T, strict=True))
    if eulers_zyz is not None:
        ang = _array_n3(eulers_zyz, "eulers_zyz")
        if len(ang) != n:
            raise InputError(f"eulers_zyz has {len(ang)} rows, coords_xyz has {n}")
        cols.update(zip(ANGLE_COLUMNS, ang.T, strict=True))
    if tomo_name is not None:
        cols["rlnTomoName"] = _per_particle([tomo_name] if isinstance(tomo_name, str) else tomo_name, n, "tomo_name")
    if class_number is not None:
        classes = np.atleast_1d(np.asarray(class_number))
        if not np.issubdtype(classes.dtype, np.integer):
            raise InputError(f"class_number must be integers, got dtype {classes.dtype}")
        cols["rlnClassNumber"] = _per_particle(classes, n, "class_number")
    for key, values in (extra or {}).items():
        cols[str(key)] = _per_particle(np.atleast_1d(np.asarray(values)), n, f"extra column {key}")
    table = ParticleTable(particles=pd.DataFrame(cols))
    if pixel_size_a is None and optics is None:
        return table
    return with_optics(table, pixel_size_a, optics=optics)


# ---------------------------------------------------------------------------------------------------- helpers


def read_star(path: str | os.PathLike[str]) -> dict[str, pd.DataFrame | dict]:
    """Every data block of any STAR file (tables as data frames, key-value blocks as dicts), with the checks every
    cryomine STAR reader makes (missing, empty, unparsable, cut mid-row: :class:`InputError` naming the file)."""
    return _read_star_blocks(Path(path))


def _read_star_blocks(p: Path) -> dict[str, pd.DataFrame | dict]:
    if not p.is_file():
        raise InputError("file not found" if not p.exists() else "not a file", p)
    if p.stat().st_size < 4096 and not p.read_text(errors="replace").strip():
        raise InputError("empty file", p)
    try:
        blocks = starfile.read(p, always_dict=True)
    except Exception as exc:  # starfile raises many kinds on corrupt input
        raise InputError(f"not a readable STAR file ({type(exc).__name__}: {str(exc)[:200]})", p) from None
    if not blocks:
        raise InputError("not a STAR file: no data blocks", p)
    _check_last_row(p, list(blocks.values())[-1])
    return dict(blocks)


def _check_last_row(p: Path, last_block: object) -> None:
    """A file cut mid-row (no final newline, the last row short of fields) is refused as truncated."""
    with open(p, "rb") as fh:
        fh.seek(max(p.stat().st_size - 1, 0))
        ends_in_newline = fh.read(1) in (b"\n", b"")
    if ends_in_newline or not isinstance(last_block, pd.DataFrame):
        return
    if last_block.empty:  # writers end every line: a table without rows and without its last newline was cut
        raise InputError("truncated: it ends inside the column list of its last table", p)
    with open(p, "rb") as fh:
        fh.seek(max(p.stat().st_size - 65536, 0))
        tail = fh.read().decode(errors="replace").rstrip().splitlines()
    if tail and not tail[-1].lstrip().startswith(("_", "data_", "loop_", "#")) and len(tail[-1].split()) < last_block.shape[1]:
        raise InputError(f"truncated: its last row has {len(tail[-1].split())} of {last_block.shape[1]} fields", p)


def _has_coordinates(block: object) -> bool:
    keys = set(block.columns) if isinstance(block, pd.DataFrame) else set(block) if isinstance(block, dict) else set()
    return set(COORDINATE_COLUMNS) <= keys or set(CENTERED_COLUMNS) <= keys


def _floats(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for col in (c for group in _FLOAT_GROUPS for c in group if c in out.columns):
        out[col] = pd.to_numeric(out[col]).astype(np.float64)
    return out


def _array_n3(values: ArrayLike, name: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be numeric") from None
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise InputError(f"{name} must have shape (n, 3), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise InputError(f"{name} contains {int((~np.isfinite(arr)).sum())} NaN/inf values")
    return arr


def _per_particle(values: Sequence | np.ndarray, n: int, name: str) -> np.ndarray | list:
    if len(values) == 1:
        return list(values) * n if not isinstance(values, np.ndarray) else np.repeat(values, n)
    if len(values) != n:
        raise InputError(f"{name} has {len(values)} values for {n} particles")
    return values if isinstance(values, np.ndarray) else list(values)

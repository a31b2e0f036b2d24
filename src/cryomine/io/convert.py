"""Particle lists of other tools -> a RELION particles STAR file with optics (the library of ``cryomine convert``).

Inputs (:data:`FORMATS`): TOM/PyTom motive lists (``motl``, ``.em``; 1-based positions, converted with
:func:`cryomine.io.em.motl_to_particles`), SHREC 2019 and SHREC 2021 ground-truth lists (``shrec2019``,
``shrec2021``; :func:`cryomine.io.particle_lists.read_shrec_particles`) and ``x,y,z`` voxel CSV picks (``csv``,
optional header). SHREC and CSV positions are taken as 0-based voxels, as cryomine's own (the tools that wrote
them index numpy arrays).

Coordinates: every position ``p`` (0-based voxels of the input's tomogram, ``pixel_size_a`` Å each) is written
as ``p / binning``, voxels of a tomogram ``binning`` times coarser, so the output's ``rlnImagePixelSize`` is
``pixel_size_a * binning``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from cryomine.errors import InputError
from cryomine.io.em import em_voxel_size_a, motl_to_particles, read_motl
from cryomine.io.optics import OpticsGroup
from cryomine.io.particle_lists import (
    SHREC2019_LAYOUT,
    ShrecLayout,
    read_coordinates_csv,
    read_shrec_particles,
)
from cryomine.io.star import COORDINATE_COLUMNS, ParticleTable, write_particles

__all__ = ["FORMATS", "ConvertConfig", "ConvertResult", "convert_particle_list", "detect_format", "read_particle_list"]

FORMATS = ("motl", "shrec2019", "shrec2021", "csv")
_SHREC2021_ONLY = {"vesicle", "fiducial"}  # SHREC 2021 scenes hold these; SHREC 2019 lists only proteins
_MAX_TEXT_BYTES = 200 * 2**20


@dataclass(frozen=True)
class ConvertConfig:
    """How to convert: ``pixel_size_a`` (Å per voxel of the input's coordinates; None: from the ``.em`` header
    when stored, else an error), ``binning`` (coordinates are divided by it, > 0), ``tomo_name``
    (``rlnTomoName``: one name, or for motive lists a pattern such as ``TS_{:03d}`` filled with the tomogram
    number; None: the motive list's numbers, or the input file's stem), and optics values written when given:
    ``tilt_series_pixel_size_a`` (Å), ``voltage_kv``, ``cs_mm``, ``amplitude_contrast``."""

    pixel_size_a: float | None = None
    binning: float = 1.0
    tomo_name: str | None = None
    tilt_series_pixel_size_a: float | None = None
    voltage_kv: float | None = None
    cs_mm: float | None = None
    amplitude_contrast: float | None = None

    def __post_init__(self) -> None:
        for name, option in (("pixel_size_a", "--pixel-size"), ("binning", "--binning"),
                             ("tilt_series_pixel_size_a", "--tilt-series-pixel-size")):  # fmt: skip
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise InputError(f"must be a number > 0, got {value!r}", option)
        if self.binning is None:
            raise InputError("must be a number > 0, got None", "--binning")
        OpticsGroup(1.0, None, self.voltage_kv, self.cs_mm, self.amplitude_contrast)  # validates those values


@dataclass(frozen=True)
class ConvertResult:
    """What was written: ``path``, input ``format``, ``n`` particles, ``pixel_size_a`` (Å per voxel of the
    written coordinates) and the ``tomo_names`` used."""

    path: Path
    format: str
    n: int
    pixel_size_a: float
    tomo_names: tuple[str, ...]


def detect_format(path: str | os.PathLike[str]) -> str:
    """The input format of a particle list, from its extension and content.

    ``.em`` -> ``motl``; ``.csv`` -> ``csv``; other text files: comma-separated -> ``csv``; whitespace-separated
    ``class c1 c2 c3 [a1 a2 a3]`` with a non-numeric class -> ``shrec2021`` when a ``vesicle``/``fiducial`` row
    or a NaN angle is present, else ``shrec2019``. Raises :class:`InputError` naming the file otherwise.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError("file not found" if not p.exists() else "not a file", p)
    suffix = p.suffix.lower()
    if suffix == ".em":
        return "motl"
    if suffix == ".csv":
        return "csv"
    hint = f"give --format {'|'.join(FORMATS)}"
    if p.stat().st_size > _MAX_TEXT_BYTES:
        raise InputError(f"cannot tell the particle list format of a {p.stat().st_size} byte file: {hint}", p)
    raw = p.read_bytes()
    if b"\0" in raw[:4096]:
        raise InputError(f"binary file of unknown particle list format (a motive list must end in .em): {hint}", p)
    rows = [line.split() for line in raw.decode("utf-8", errors="replace").splitlines() if line.strip()]
    if not rows:
        raise InputError("empty file", p)
    if "," in " ".join(rows[0]):
        return "csv"
    if len(rows[0]) in (4, 7) and not _is_number(rows[0][0]) and all(_is_number(v) for v in rows[0][1:4]):
        unoriented = any(r[0].lower() in _SHREC2021_ONLY or any(v.lower() == "nan" for v in r[4:7]) for r in rows)
        return "shrec2021" if unoriented else "shrec2019"
    raise InputError(f"cannot tell the particle list format (not a SHREC list or comma-separated x,y,z): {hint}", p)


def read_particle_list(
    path: str | os.PathLike[str], fmt: str | None = None, *, binning: float = 1.0, tomo_name: str | None = None
) -> tuple[ParticleTable, str]:
    """Read a motive list, SHREC list or CSV of picks as a :class:`ParticleTable` (no optics) and its format.

    ``fmt``: one of :data:`FORMATS`, None to detect (:func:`detect_format`). Coordinates are 0-based voxels
    divided by ``binning``; ``rlnTomoName`` follows ``tomo_name`` (see :class:`ConvertConfig`).
    """
    p = Path(path)
    chosen = detect_format(p) if fmt is None else fmt
    if chosen not in FORMATS:
        raise InputError(f"unknown input format {chosen!r}; expected one of {', '.join(FORMATS)}", "--format")
    if chosen == "motl":
        return ParticleTable(motl_to_particles(read_motl(p), binning=binning, tomo_name=tomo_name)), chosen
    if tomo_name is not None and (not isinstance(tomo_name, str) or not tomo_name or any(c.isspace() for c in tomo_name)):
        raise InputError(f"tomogram name must be a non-empty word without spaces, got {tomo_name!r}", "--tomo-name")
    if tomo_name is not None and "{" in tomo_name:
        raise InputError(f"a name pattern ({tomo_name!r}) needs tomogram numbers, which only motive lists have",
                         "--tomo-name")  # fmt: skip
    factor = _positive(binning)
    if chosen == "csv":
        df = read_coordinates_csv(p).particles.copy()
    else:
        df = read_shrec_particles(p, SHREC2019_LAYOUT if chosen == "shrec2019" else ShrecLayout()).particles.copy()
    df[list(COORDINATE_COLUMNS)] = df[list(COORDINATE_COLUMNS)] / factor
    df["rlnTomoName"] = tomo_name or p.stem
    return ParticleTable(df), chosen


def convert_particle_list(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    fmt: str | None = None,
    config: ConvertConfig = ConvertConfig(),
) -> ConvertResult:
    """Convert the particle list ``path`` to the RELION particles STAR ``out`` with a ``data_optics`` block.

    The written ``rlnImagePixelSize`` is ``pixel_size_a * binning``. Raises :class:`InputError` naming the file
    or option for bad input (missing/truncated/unknown file, NaN, wrong columns, unknown pixel size, an output
    not ending in ``.star``); ``out`` is written atomically, so it is untouched then.
    """
    p, o = Path(path), Path(out)
    if o.suffix.lower() != ".star":
        raise InputError(f"output must be a .star file, got {o.name!r}", "--out")
    if p.exists() and o.exists() and o.resolve() == p.resolve():
        raise InputError("output would overwrite the input", "--out")
    if fmt is not None and fmt not in FORMATS:
        raise InputError(f"unknown input format {fmt!r}; expected one of {', '.join(FORMATS)}", "--format")
    chosen = detect_format(p) if fmt is None else fmt
    pixel = config.pixel_size_a
    if pixel is None and chosen == "motl":
        pixel = em_voxel_size_a(p)
    if pixel is None:
        raise InputError(f"pixel size unknown for {p.name}: give --pixel-size (Å per voxel of its coordinates)",
                         "--pixel-size")  # fmt: skip
    table, chosen = read_particle_list(p, chosen, binning=config.binning, tomo_name=config.tomo_name)
    optics = OpticsGroup(pixel_size_a=float(pixel) * config.binning, tilt_series_pixel_size_a=config.tilt_series_pixel_size_a,
                         voltage_kv=config.voltage_kv, cs_mm=config.cs_mm, amplitude_contrast=config.amplitude_contrast)  # fmt: skip
    write_particles(o, table, optics=optics)
    names = tuple(sorted(set(table.particles["rlnTomoName"].astype(str)))) if len(table) else ()
    return ConvertResult(path=o, format=chosen, n=len(table), pixel_size_a=optics.pixel_size_a, tomo_names=names)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _positive(value: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"binning must be a number, got {value!r}", "--binning") from None
    if not (math.isfinite(v) and v > 0):
        raise InputError(f"binning must be > 0, got {value!r}", "--binning")
    return v

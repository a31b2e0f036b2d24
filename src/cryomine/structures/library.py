"""The shipped structure library: ids, metadata and loading as density maps.

Shipped data (``cryomine/structures/data``, see ``PROVENANCE.md`` there): atomic models ``pdb/<id>.pdb.gz`` and
density maps at 10 Å/voxel ``maps_10A/<id>.mrc``. An id with an atomic model has source ``"pdb"`` and is always
computed from its atoms (:mod:`cryomine.structures.density`); the others have source ``"map"``.

Every structure returned by :func:`load_structure` follows the same conventions: a cubic ``(n, n, n)`` float32
array indexed (z, y, x), zero solvent level, centre of mass at voxel ``n // 2``, origin ``(0, 0, 0)``.
Maps (shipped or user MRC files) are prepared by subtracting the median of the box faces, centring the centre of
mass of the positive density (:func:`~cryomine.structures.maps.center_volume`), padding to a cube and resampling to
the requested voxel size (:func:`~cryomine.structures.maps.resample_volume`). Shipped maps are taken to have a
resolution of 2 x their voxel size (20 Å); a coarser ``resolution_a`` adds the Gaussian blur that makes up the
difference (same sigma convention as for atoms), a finer one cannot be recovered and adds nothing.

Density scales differ between sources: atom-computed maps are in gemmi's units (per Å^3; a carbon integrates
to about 2.5), shipped maps keep their file's scale (which varies between maps). Normalise before mixing.

Metadata (:func:`list_structures`) is read from ``data/index.json``, written by :func:`build_index` (run
``write_index()`` after changing the data; a test checks the index matches a fresh
computation). ``diameter_a`` is ``2 * max distance`` from the centre of mass: of the atoms for ``"pdb"`` entries,
of the voxels above ``MAP_THRESHOLD`` x the maximum (after background subtraction) for ``"map"`` entries.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from cryomine.errors import InputError
from cryomine.geometry.validate import check_voxel_size
from cryomine.io.atomic import atomic_output
from cryomine.io.mrc import Volume, read_mrc
from cryomine.io.volume import read_volume
from cryomine.structures.density import (
    SIGMA_PER_RESOLUTION,
    atoms_from_file,
    default_box_size,
    density_from_model,
    max_radius_a,
)
from cryomine.structures.maps import (
    center_of_mass_zyx,
    center_volume,
    gaussian_lowpass,
    pad_to_cube,
    resample_volume,
    subtract_border_background,
)

#: Fraction of the map maximum above which voxels count towards a map's diameter.
MAP_THRESHOLD = 0.1
#: Voxel size (Å) of the shipped maps and of the box sizes in :class:`StructureInfo`.
LIBRARY_VOXEL_SIZE_A = 10.0
ATOM_SUFFIXES = (".pdb", ".ent", ".cif", ".mmcif")
MAP_SUFFIXES = (".mrc", ".map", ".rec", ".em")
_INDEX_NAME = "index.json"


@dataclass(frozen=True)
class StructureInfo:
    """One library entry: ``id`` (as shipped, e.g. ``4v4r_30S``; matched case-insensitively), ``source`` ("pdb" or "map"),
    approximate ``diameter_a`` (Å) and
    ``box_size`` (voxels per axis of the shipped map, or of the map computed from atoms, at 10 Å/voxel)."""

    id: str
    source: str
    diameter_a: float
    box_size: int

    def __post_init__(self) -> None:
        if self.source not in ("pdb", "map"):
            raise InputError(f"structure {self.id!r}: source must be 'pdb' or 'map', got {self.source!r}")
        if not (self.diameter_a > 0 and self.box_size > 0):
            raise InputError(f"structure {self.id!r}: diameter and box size must be > 0")

    def to_dict(self) -> dict[str, object]:
        """The fields as a JSON-ready dict."""
        return asdict(self)


def data_dir() -> Path:
    """The package's structure data folder (``cryomine/structures/data``)."""
    return Path(str(resources.files("cryomine.structures").joinpath("data")))


def _pdb_path(sid: str) -> Path:
    return data_dir() / "pdb" / f"{sid}.pdb.gz"


def _map_path(sid: str) -> Path:
    return data_dir() / "maps_10A" / f"{sid}.mrc"


@functools.lru_cache(maxsize=1)
def _shipped_ids() -> tuple[tuple[str, str], ...]:
    """``(id, source)`` for every shipped structure, sorted case-insensitively.

    Ids keep the case of the shipped file names (e.g. ``4v4r_30S``); lookups are case-insensitive.
    """
    root = data_dir()
    pdb = {p.name[: -len(".pdb.gz")] for p in (root / "pdb").glob("*.pdb.gz")}
    maps = {p.stem for p in (root / "maps_10A").glob("*.mrc")}
    return tuple((sid, "pdb" if sid in pdb else "map") for sid in sorted(pdb | maps, key=str.lower))


def structure_ids() -> list[str]:
    """All shipped structure ids, sorted case-insensitively (use any case to refer to them)."""
    return [sid for sid, _ in _shipped_ids()]


def _canonical(name: str) -> str | None:
    """The shipped id matching ``name`` case-insensitively, or None."""
    key = str(name).strip().lower()
    return next((sid for sid, _ in _shipped_ids() if sid.lower() == key), None)


def _source(sid: str) -> str:
    return dict(_shipped_ids())[sid]


def compute_info(sid: str) -> StructureInfo:
    """Compute a shipped structure's :class:`StructureInfo` from its data (what :func:`build_index` stores)."""
    sid = _known_id(sid)
    if _source(sid) == "pdb":
        st = atoms_from_file(_pdb_path(sid))
        diameter = 2.0 * max_radius_a(st)
        box = default_box_size(st, LIBRARY_VOXEL_SIZE_A, 2.0 * LIBRARY_VOXEL_SIZE_A)
        return StructureInfo(sid, "pdb", round(diameter, 1), box)
    vol = read_mrc(_map_path(sid))
    return StructureInfo(sid, "map", round(map_diameter_a(vol.data, vol.voxel_size_a), 1), max(vol.data.shape))


def map_diameter_a(data: np.ndarray, voxel_size_a: float) -> float:
    """Approximate diameter (Å) of the density in a ``(d, h, w)`` map: twice the largest distance from the centre
    of mass of any voxel above ``MAP_THRESHOLD`` x the maximum, after subtracting the face-median background."""
    arr = subtract_border_background(data)
    com = center_of_mass_zyx(arr)
    idx = np.argwhere(arr > MAP_THRESHOLD * arr.max())
    return 2.0 * float(np.linalg.norm(idx - com, axis=1).max()) * voxel_size_a


def index_path() -> Path:
    """Path of the package's ``data/index.json``."""
    return data_dir() / _INDEX_NAME


def write_index() -> list[StructureInfo]:
    """Recompute the metadata of every shipped structure and write the package's ``data/index.json``.

    Run ``python -c "from cryomine.structures.library import write_index; write_index()"`` after changing the data.
    """
    return build_index(index_path())


def build_index(path: str | os.PathLike[str] | None = None) -> list[StructureInfo]:
    """Compute :class:`StructureInfo` for every shipped id; write them as JSON to ``path`` if given.

    :func:`write_index` writes the package's ``data/index.json`` with it.
    """
    infos = [compute_info(sid) for sid in structure_ids()]
    if path is not None:
        with atomic_output(path) as tmp:
            tmp.write_text(json.dumps([i.to_dict() for i in infos], indent=1) + "\n", encoding="utf-8")
    return infos


@functools.lru_cache(maxsize=1)
def _index() -> tuple[StructureInfo, ...]:
    p = index_path()
    try:
        rows = json.loads(p.read_text(encoding="utf-8"))
        infos = tuple(StructureInfo(**row) for row in rows)
    except (OSError, ValueError, TypeError) as exc:  # missing or corrupt index: compute (slower) instead
        del exc
        return tuple(build_index())
    if sorted((i.id for i in infos), key=str.lower) != structure_ids():
        return tuple(build_index())
    return infos


def list_structures() -> list[StructureInfo]:
    """Metadata of every shipped structure, sorted by id (from ``data/index.json``)."""
    return sorted(_index(), key=lambda i: i.id.lower())


def bundled_radius_a(structure_id: str) -> float | None:
    """Half the diameter (Å) of a shipped structure (id case-insensitive), None for anything else (e.g. a file)."""
    for info in _index():
        if info.id.lower() == str(structure_id).lower():
            return info.diameter_a / 2.0
    return None


def _known_id(sid: str) -> str:
    """The canonical shipped id for ``sid`` (any case), or :class:`InputError` listing some known ids."""
    found = _canonical(sid)
    if found is None:
        ids = structure_ids()
        raise InputError(f"unknown structure id {sid!r} (known: {', '.join(ids[:6])}, ... {len(ids)} in all)")
    return found


def _file_kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    suffix = os.path.splitext(name)[1]
    if suffix in ATOM_SUFFIXES:
        return "atoms"
    if suffix in MAP_SUFFIXES:
        return "map"
    return None


def load_structure(
    id_or_path: str | os.PathLike[str],
    voxel_size_a: float = 10.0,
    resolution_a: float | None = None,
    *,
    map_voxel_size_a: float | None = None,
    map_voxel_size_name: str = "map_voxel_size_a",
) -> Volume:
    """Load a structure as a density map (see the module docstring for the conventions).

    ``id_or_path`` is a shipped id (case-insensitive) or a path to a PDB/mmCIF (optionally ``.gz``), MRC or
    TOM/PyTom ``.em`` map. ``map_voxel_size_a`` (Å) is the voxel size of a map file, overriding its header; an
    ``.em`` map whose header holds none needs it (an :class:`InputError` naming ``map_voxel_size_name``
    otherwise, see :func:`cryomine.io.read_volume`). ``resolution_a`` defaults to ``2 * voxel_size_a``.
    Results are cached in-process; each call returns a fresh
    copy of the array, so callers may modify it. Raises :class:`InputError` for unknown ids, missing or bad
    files and bad parameters.
    """
    vs = check_voxel_size(voxel_size_a, "voxel_size_a")
    if resolution_a is not None:
        res = _positive(resolution_a, "resolution_a")
    else:
        res = 2.0 * vs
    sid = _canonical(id_or_path) if isinstance(id_or_path, str) else None
    if sid is not None:
        vol = _load_cached(("id", sid, 0, 0), vs, res)
    else:
        p = Path(id_or_path)
        if not p.is_file():
            if _file_kind(p) is None and os.sep not in str(id_or_path) and "/" not in str(id_or_path):
                _known_id(str(id_or_path))  # raises "unknown structure id"
            raise InputError("file not found" if not p.exists() else "not a file", p)
        st = p.resolve().stat()
        key = ("file", str(p.resolve()), st.st_mtime_ns, st.st_size)
        vol = _load_cached(key, vs, res, map_voxel_size_a, map_voxel_size_name)
    return Volume(data=vol.data.copy(), voxel_size_a=vol.voxel_size_a, origin_zyx_a=vol.origin_zyx_a)


@functools.lru_cache(maxsize=64)
def _load_cached(
    key: tuple[str, str, int, int],
    voxel_size_a: float,
    resolution_a: float,
    map_voxel_size_a: float | None = None,
    map_voxel_size_name: str = "map_voxel_size_a",
) -> Volume:
    kind, name, _, _ = key
    if kind == "id":
        if _source(name) == "pdb":
            vol = density_from_model(atoms_from_file(_pdb_path(name)), voxel_size_a, resolution_a)
        else:
            vol = _map_volume(read_mrc(_map_path(name)), voxel_size_a, resolution_a)
    else:
        path = Path(name)
        file_kind = _file_kind(path)
        if file_kind == "atoms":
            try:
                vol = density_from_model(atoms_from_file(path), voxel_size_a, resolution_a)
            except InputError as exc:  # name the file, unless the message already does (or names an option)
                if str(exc).startswith((str(path), "--")):
                    raise
                raise InputError(str(exc), path) from None
        elif file_kind == "map":
            own = read_volume(path, map_voxel_size_a, option=map_voxel_size_name)
            vol = _map_volume(own, voxel_size_a, resolution_a, source=path)
        else:
            raise InputError(
                f"unsupported structure file type (expected {', '.join(ATOM_SUFFIXES + MAP_SUFFIXES)}, "
                "optionally .gz for atomic models)",
                path,
            )
    vol.data.flags.writeable = False
    return vol


def _map_volume(vol: Volume, voxel_size_a: float, resolution_a: float, source: Path | None = None) -> Volume:
    """Background-subtract, centre, pad to a cube, blur to ``resolution_a`` and resample a map (module docstring)."""
    if resolution_a < 2.0 * voxel_size_a * (1 - 1e-6):
        raise InputError(
            f"resolution_a={resolution_a:g} Å is finer than the Nyquist limit 2 x voxel size = {2 * voxel_size_a:g} Å"
        )
    data = subtract_border_background(vol.data)
    if not (data > 0).any():
        raise InputError("map has no density above its background", source)
    data = pad_to_cube(center_volume(data))
    own_sigma = SIGMA_PER_RESOLUTION * 2.0 * vol.voxel_size_a
    extra = (SIGMA_PER_RESOLUTION * resolution_a) ** 2 - own_sigma**2
    if extra > 1e-6:
        data = gaussian_lowpass(data, float(np.sqrt(extra)), vol.voxel_size_a)
    out = resample_volume(Volume(data=data, voxel_size_a=vol.voxel_size_a), voxel_size_a)
    return Volume(data=out.data, voxel_size_a=out.voxel_size_a)


def resolve_structures(spec: str | Sequence[str]) -> list[str]:
    """Turn a CLI structure spec into a list of shipped ids and/or file paths (duplicates removed, order kept).

    ``spec`` is ``"all"`` (every shipped id), a comma-separated list of ids and/or file paths, or a list of
    such strings. Ids match case-insensitively and win over same-named files. Raises :class:`InputError` for an
    empty spec or an item that is neither a known id nor an existing file.
    """
    items = [spec] if isinstance(spec, str) else list(spec)
    parts = [part.strip() for item in items for part in str(item).split(",")]
    parts = [p for p in parts if p]
    if not parts:
        raise InputError("empty structure list: give 'all', ids such as 1bxn,3j9i, or file paths")
    out: list[str] = []
    for part in parts:
        sid = _canonical(part)
        if part.lower() == "all":
            found = structure_ids()
        elif sid is not None:
            found = [sid]
        elif Path(part).is_file():
            found = [part]
        elif _file_kind(Path(part)) is not None or "/" in part or os.sep in part:
            raise InputError("structure file not found", part)
        else:
            found = [_known_id(part)]
        out.extend(f for f in found if f not in out)
    return out


def _positive(value: float, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(v) or v <= 0:
        raise InputError(f"{name} must be > 0, got {v:g}")
    return v

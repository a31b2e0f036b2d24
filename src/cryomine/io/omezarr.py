"""OME-Zarr (NGFF 0.4) tomograms: the layout of copick projects and the CZ cryoET Data Portal.

A tomogram is a zarr group whose ``multiscales`` attribute lists its pyramid levels (``datasets``, level 0 the
full resolution), each an array ``(z, y, x)`` with a ``scale`` coordinate transformation (the voxel spacing per
axis in the axes' unit). A path names either the group (``tomo.zarr``: level 0) or one level inside it
(``tomo.zarr/1``); the voxel size comes from that level's scale, converted to Å, and must be isotropic.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import zarr

from cryomine.errors import InputError
from cryomine.geometry.validate import check_volume, resolve_voxel_size
from cryomine.io.mrc import Volume
from cryomine.resources import check_memory

__all__ = ["is_omezarr", "omezarr_levels", "read_omezarr", "write_omezarr"]

#: length units of NGFF axes, in Å
UNITS_A = {"angstrom": 1.0, "nanometer": 10.0, "micrometer": 1e4, "millimeter": 1e7, "meter": 1e10}


def _group_and_level(path: Path) -> tuple[Path, str | None]:
    """``(group folder, level path or None)`` for a path naming an OME-Zarr group or one of its levels."""
    if (path / ".zattrs").is_file() and "multiscales" in _attrs(path):
        return path, None
    parent = path.parent
    if (parent / ".zattrs").is_file() and "multiscales" in _attrs(parent):
        return parent, path.name
    raise InputError("not an OME-Zarr image (no 'multiscales' in its .zattrs, nor in its parent's)", path)


def _attrs(folder: Path) -> dict:
    try:
        data = json.loads((folder / ".zattrs").read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"unreadable OME-Zarr attributes ({' '.join(str(exc).split())[:100]})", folder / ".zattrs") from None
    return data if isinstance(data, dict) else {}


def is_omezarr(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an OME-Zarr group or one level of one (a folder; nothing is read but attributes)."""
    p = Path(path)
    if not p.is_dir():
        return False
    try:
        _group_and_level(p)
    except InputError:
        return False
    return True


def omezarr_levels(path: str | os.PathLike[str]) -> list[tuple[str, float]]:
    """The pyramid of an OME-Zarr image: ``[(level path, voxel size in Å), ...]``, full resolution first."""
    group, _ = _group_and_level(Path(path))
    try:
        ms = _attrs(group)["multiscales"][0]
        axes = ms["axes"]
        datasets = ms["datasets"]
    except (KeyError, IndexError, TypeError):
        raise InputError("malformed 'multiscales' (needs axes and datasets)", group) from None
    space = [i for i, a in enumerate(axes) if isinstance(a, dict) and a.get("type", "space") == "space"]
    if [axes[i].get("name") for i in space] != ["z", "y", "x"]:
        raise InputError(f"spatial axes must be z, y, x, got {[a.get('name') for a in axes if isinstance(a, dict)]}", group)
    unit = axes[space[0]].get("unit")
    if unit not in UNITS_A:
        raise InputError(f"spatial unit {unit!r} is not a length unit ({', '.join(UNITS_A)}); give the voxel size with --voxel-size", group)
    levels = []
    for ds in datasets:
        scale = next((t.get("scale") for t in ds.get("coordinateTransformations", []) if t.get("type") == "scale"), None)
        if scale is None or len(scale) != len(axes):
            raise InputError(f"level {ds.get('path')!r} has no scale for its {len(axes)} axes", group)
        zyx = [float(scale[i]) * UNITS_A[unit] for i in space]
        if not all(np.isfinite(zyx)) or min(zyx) <= 0 or max(zyx) > 1.01 * min(zyx):
            raise InputError(f"level {ds.get('path')!r} has voxel spacing {zyx} Å (z, y, x): not isotropic and positive", group)
        levels.append((str(ds.get("path")), zyx[2]))
    if not levels:
        raise InputError("'multiscales' lists no levels", group)
    return levels


def read_omezarr(path: str | os.PathLike[str], voxel_size_a: float | None = None, *, option: str = "--voxel-size") -> Volume:
    """Read one level of an OME-Zarr image (the group: level 0) as a float32 ``(z, y, x)`` :class:`Volume`; the
    voxel size is the level's scale (Å) unless ``voxel_size_a`` overrides it. Non-spatial axes (time, channel)
    must have length 1. :class:`InputError` naming the path for anything else."""
    p = Path(path)
    group, level = _group_and_level(p)
    levels = dict(omezarr_levels(group))
    level = level if level is not None else next(iter(levels))
    if level not in levels:
        raise InputError(f"no pyramid level {level!r} (levels: {', '.join(levels)})", p)
    try:
        arr = zarr.open_array(str(group / level), mode="r")
    except Exception as exc:  # zarr raises several kinds on a damaged store
        raise InputError(f"unreadable OME-Zarr level ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})", group / level) from None
    shape = tuple(int(s) for s in arr.shape)
    if len(shape) < 3 or any(s != 1 for s in shape[:-3]):
        raise InputError(f"level {level!r} has shape {shape}: not one (z, y, x) volume", p)
    check_memory(4.0 * np.prod(shape[-3:], dtype=np.float64), f"reading its {'x'.join(map(str, shape[-3:]))} voxels", p)
    try:
        data = np.asarray(arr[...]).reshape(shape[-3:])
    except Exception as exc:
        raise InputError(f"unreadable OME-Zarr chunks ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})", group / level) from None
    vs = resolve_voxel_size(levels[level], voxel_size_a, p, option)
    return Volume(data=check_volume(data, p), voxel_size_a=vs)


def _bin2(data: np.ndarray) -> np.ndarray:
    """Mean over 2x2x2 blocks (odd edges dropped): the next pyramid level."""
    d, h, w = (s // 2 * 2 for s in data.shape)
    return data[:d, :h, :w].reshape(d // 2, 2, h // 2, 2, w // 2, 2).mean(axis=(1, 3, 5)).astype(np.float32)


def write_omezarr(path: str | os.PathLike[str], data: np.ndarray, voxel_size_a: float, levels: int = 3,
                  chunks: int = 64) -> Path:
    """Write a ``(z, y, x)`` volume as an OME-Zarr image with ``levels`` levels (each 2x binned from the one
    before; fewer when the volume gets too small), voxel sizes in Å; atomically (a temporary folder renamed)."""
    out = Path(path)
    if out.exists():
        raise InputError("exists: choose another name or remove it", out)
    vol = check_volume(data, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        root = zarr.open_group(str(tmp), mode="w")
        datasets, level = [], vol
        for i in range(max(1, int(levels))):
            root.create_dataset(str(i), data=level, chunks=(min(chunks, level.shape[0]),) + (chunks, chunks))
            datasets.append({"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": [voxel_size_a * 2**i] * 3}]})
            if min(level.shape) < 4:
                break
            level = _bin2(level)
        root.attrs["multiscales"] = [{"version": "0.4", "name": out.stem, "datasets": datasets,
                                      "axes": [{"name": a, "type": "space", "unit": "angstrom"} for a in "zyx"]}]
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out

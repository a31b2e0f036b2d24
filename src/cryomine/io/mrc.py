"""MRC volumes through mrcfile, in (z, y, x) order, keeping voxel size (Å) and origin (Å).

mrcfile already returns ``data[z, y, x]`` (sections, rows, columns), which is the package's axis order.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np

from cryomine.errors import InputError
from cryomine.geometry.validate import check_volume, check_voxel_size, resolve_voxel_size, slab_moments
from cryomine.io.atomic import atomic_output
from cryomine.resources import check_memory


@dataclass(frozen=True)
class Volume:
    """A ``(d, h, w)`` float32 volume with its voxel size and origin.

    ``voxel_size_a`` is in Å. ``origin_zyx_a`` is the MRC header origin (Å), stored in (z, y, x) order.
    """

    data: np.ndarray
    voxel_size_a: float = 1.0
    origin_zyx_a: tuple[float, float, float] = (0.0, 0.0, 0.0)


def _open_checked(p: Path, opener: Callable[..., Any]) -> Any:
    """``opener(p)`` read-only (``mrcfile.open`` or ``mrcfile.mmap``), with mrcfile's warnings silenced;
    InputError naming ``p`` when it is missing, not a file, or not a readable MRC file."""
    if not p.is_file():
        raise InputError("file not found" if not p.exists() else "not a file", p)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return opener(p, mode="r", permissive=False)
    except (ValueError, OSError, EOFError, TypeError, OverflowError, MemoryError) as exc:
        why = "truncated: its header describes more data than the file holds" if "greater than file size" in str(exc) else _short(exc)
        raise InputError(f"not a readable MRC file ({why})", p) from None


def read_mrc(path: str | os.PathLike[str], *, allow_stack: bool = False, voxel_size_a: float | None = None,
             option: str | None = None, strict: bool = False) -> Volume:
    """Read an MRC file into a :class:`Volume`.

    Raises :class:`InputError` naming the file for a missing, truncated or corrupt file, a non-3-D array
    (unless ``allow_stack``: then a 2-D image is returned as a ``(1, h, w)`` stack), or NaN/inf voxels.
    The voxel size is the header's x spacing; a zero spacing in the header (unset) is reported as 1 Å here, for
    readers that do not need it (masks, images). With ``strict`` or a ``voxel_size_a`` (Å, overriding the
    header; ``option`` names where it came from) the voxel size is resolved by
    :func:`~cryomine.geometry.validate.resolve_voxel_size`: an unset header is an :class:`InputError` unless the
    caller supplies the value (:func:`open_mrc_volume` does the same for memory maps).
    """
    p = Path(path)
    with _open_checked(p, mrcfile.mmap) as mrc:  # mapped: the size is checked before anything is read
        if mrc.data is None or np.iscomplexobj(mrc.data):
            raise InputError(f"holds {'no data' if mrc.data is None else 'complex values (MRC mode ' + str(int(mrc.header.mode)) + ')'}, "
                             "not a real-valued volume", p)  # fmt: skip
        check_memory(4.0 * mrc.data.size, f"reading its {'x'.join(map(str, mrc.data.shape))} voxels", p)
        data = np.array(mrc.data, dtype=np.float32, copy=True)
        vs = float(mrc.voxel_size.x)
        origin = mrc.header.origin
        origin_zyx = (float(origin.z), float(origin.y), float(origin.x))
    if allow_stack and data.ndim == 2:
        data = data[None]
    data = check_volume(data, p)
    if strict or voxel_size_a is not None:
        vs = resolve_voxel_size(vs, voxel_size_a, p, option)
    return Volume(data=data, voxel_size_a=vs if vs > 0 else 1.0, origin_zyx_a=origin_zyx)


def write_mrc(
    path: str | os.PathLike[str],
    data: np.ndarray,
    voxel_size_a: float = 1.0,
    origin_zyx_a: tuple[float, float, float] = (0.0, 0.0, 0.0),
    mrc_mode: int = 2,
) -> Path:
    """Write a ``(d, h, w)`` volume as MRC, atomically (temporary file, then rename): float32 (``mrc_mode`` 2,
    the default), or int8 / int16 (modes 0 / 1, e.g. label maps; values must fit)."""
    if mrc_mode not in (0, 1, 2):
        raise InputError(f"MRC mode must be 0 (int8), 1 (int16) or 2 (float32), got {mrc_mode!r}", path)
    arr = check_volume(data, path)
    if mrc_mode != 2:
        info = np.iinfo(np.int8 if mrc_mode == 0 else np.int16)
        if not (np.asarray(arr) == np.round(arr)).all() or arr.min() < info.min or arr.max() > info.max:
            raise InputError(f"values must be integers in [{info.min}, {info.max}] for MRC mode {mrc_mode}", path)
    vs = check_voxel_size(voxel_size_a, path)
    p = Path(path)
    with atomic_output(p) as tmp:
        # mrcfile writes the header (and sizes the file) without touching the data pages; the data then goes in
        # z-slabs with plain writes: no in-memory copy of a big tomogram, and no resident mapped pages
        with mrcfile.new_mmap(tmp, shape=arr.shape, mrc_mode=mrc_mode, overwrite=True) as mrc:
            set_geometry(mrc, vs, origin_zyx_a)
            set_header_stats(mrc, arr)
            offset = mrc.header.nbytes + mrc.extended_header.nbytes
            dtype = mrc.data.dtype
        per = max(1, 2**24 // max(1, arr.shape[1] * arr.shape[2]))
        with open(tmp, "r+b") as f:
            f.seek(offset)
            for z in range(0, arr.shape[0], per):
                f.write(np.ascontiguousarray(arr[z : z + per], dtype=dtype).tobytes())
    return p


def set_header_stats(mrc: Any, data: np.ndarray, chunk_voxels: int = 2**24) -> None:
    """What ``mrcfile``'s ``update_header_stats`` sets (min, max, mean, rms = standard deviation), computed in
    z-slabs (:func:`~cryomine.geometry.validate.slab_moments`) so that big tomograms need no full-size temporary."""
    mrc.header.dmin, mrc.header.dmax, mrc.header.dmean, mrc.header.rms = slab_moments(data, chunk_voxels)


def set_geometry(mrc: Any, voxel_size_a: float, origin_zyx_a: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> None:
    """Set the voxel size (Å) and origin (Å, given in (z, y, x) order) of an open, writable mrcfile object."""
    mrc.voxel_size = check_voxel_size(voxel_size_a)
    mrc.header.origin.z, mrc.header.origin.y, mrc.header.origin.x = (float(v) for v in origin_zyx_a)


def write_volume(path: str | os.PathLike[str], volume: Volume) -> Path:
    """Write a :class:`Volume` (data, voxel size and origin) with :func:`write_mrc`."""
    return write_mrc(path, volume.data, volume.voxel_size_a, volume.origin_zyx_a)


@contextlib.contextmanager
def open_mrc_volume(
    path: str | os.PathLike[str], voxel_size_a: float | None = None, *, option: str | None = None
) -> Iterator[Volume]:
    """Memory-map a 3-D MRC read-only: yields a :class:`Volume` whose ``data`` is the ``(d, h, w)`` memory map.

    The voxel size is ``voxel_size_a`` when given (it overrides the header), else the header's x spacing; an
    unset (0) header is an :class:`InputError` naming the file and ``option`` (the flag that sets the voxel size,
    e.g. ``"--voxel-size"``), never a guess. The origin is the header's (Å). Raises :class:`InputError` naming
    the file when it is missing, unreadable or not a real 3-D volume.
    """
    p = Path(path)
    mrc = _open_checked(p, mrcfile.mmap)
    try:
        data = mrc.data
        if data is None or data.ndim != 3 or 0 in data.shape:
            raise InputError(f"must be a 3-D volume, got shape {None if data is None else data.shape}", p)
        if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
            raise InputError(f"volume has non-real dtype {data.dtype}", p)
        vs = resolve_voxel_size(float(mrc.voxel_size.x), voxel_size_a, p, option)
        origin = mrc.header.origin
        yield Volume(data=data, voxel_size_a=vs, origin_zyx_a=(float(origin.z), float(origin.y), float(origin.x)))
    finally:
        mrc.close()


def header_voxel_size_a(path: str | os.PathLike[str]) -> float:
    """The voxel size (Å) an MRC header states (x spacing), 0 when unset; the file is checked like any read."""
    p = Path(path)
    with _open_checked(p, mrcfile.mmap) as mrc:
        return float(mrc.voxel_size.x)


@contextlib.contextmanager
def open_mrc_mmap(
    path: str | os.PathLike[str], voxel_size_a: float | None = None, *, option: str | None = None
) -> Iterator[tuple[np.ndarray, float]]:
    """:func:`open_mrc_volume` yielding ``(data (d, h, w), voxel_size_a)``; the same checks (an unset voxel size
    in the header is an error unless ``voxel_size_a`` is given)."""
    with open_mrc_volume(path, voxel_size_a, option=option) as vol:
        yield vol.data, vol.voxel_size_a


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__

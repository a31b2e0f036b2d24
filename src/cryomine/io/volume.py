"""One reader for volumes by file extension: MRC (``.mrc .map .rec .mrcs``, mrcfile), TOM/PyTom ``.em`` and
OME-Zarr images (folders; a group or one of its pyramid levels, :mod:`cryomine.io.omezarr`)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from cryomine.errors import InputError
from cryomine.geometry.validate import check_voxel_size
from cryomine.io.em import em_voxel_size_a, read_em
from cryomine.io.mrc import Volume, header_voxel_size_a, open_mrc_volume, read_mrc
from cryomine.io.omezarr import is_omezarr, omezarr_levels, read_omezarr

__all__ = ["EM_SUFFIXES", "MRC_SUFFIXES", "VOLUME_SUFFIXES", "header_voxel_size", "open_volume", "read_volume", "volume_kind"]

MRC_SUFFIXES = (".mrc", ".map", ".rec", ".mrcs")
EM_SUFFIXES = (".em",)
VOLUME_SUFFIXES = MRC_SUFFIXES + EM_SUFFIXES


def volume_kind(path: str | os.PathLike[str]) -> str | None:
    """``"mrc"`` or ``"em"`` by the file's extension (case-insensitive), ``"omezarr"`` for an OME-Zarr folder,
    None for anything else."""
    if is_omezarr(path):
        return "omezarr"
    suffix = Path(path).suffix.lower()
    return "mrc" if suffix in MRC_SUFFIXES else "em" if suffix in EM_SUFFIXES else None


def read_volume(
    path: str | os.PathLike[str],
    voxel_size_a: float | None = None,
    *,
    option: str = "voxel_size_a",
    allow_stack: bool = False,
) -> Volume:
    """Read an MRC or ``.em`` volume as a float32 ``(z, y, x)`` :class:`Volume`, chosen by extension.

    The voxel size is ``voxel_size_a`` (Å) when given (it overrides the header), else the header's: the MRC
    header's x spacing (an unset, 0 header is an :class:`InputError` naming ``option``), or the ``.em`` header's pixel size
    (:func:`cryomine.io.em.em_voxel_size_a`). A TOM ``.em`` header rarely holds one; then ``voxel_size_a`` is
    required and its absence is an :class:`InputError` naming the file and ``option`` (the user's name for it,
    e.g. ``--template-voxel-size``), never a silent 1 Å. ``allow_stack`` (MRC only): a 2-D image is returned as
    a ``(1, h, w)`` stack. Raises :class:`InputError` naming the file for an unknown extension and for anything
    :func:`cryomine.io.read_mrc` / :func:`cryomine.io.read_em` reject.
    """
    p = Path(path)
    kind = volume_kind(p)
    if kind is None:
        raise InputError(f"unknown volume file type {p.suffix or '(no extension)'!r}; expected one of "
                         f"{', '.join(VOLUME_SUFFIXES)}", p)  # fmt: skip
    given = None if voxel_size_a is None else check_voxel_size(voxel_size_a, option)
    if kind == "omezarr":
        return read_omezarr(p, given, option=option)
    if kind == "mrc":
        return read_mrc(p, allow_stack=allow_stack, voxel_size_a=given, option=option, strict=True)
    stored = em_voxel_size_a(p)
    if given is None and stored is None:
        raise InputError(f"the .em header holds no voxel size: give the file's voxel size (Å) with {option}", p)
    return read_em(p, voxel_size_a=given if given is not None else stored)


def header_voxel_size(path: str | os.PathLike[str]) -> float:
    """The voxel size (Å) a volume file's header states, 0 when it states none (MRC unset, TOM ``.em``)."""
    kind = volume_kind(path)
    if kind == "em":
        return em_voxel_size_a(path) or 0.0
    if kind == "omezarr":
        level = Path(path).name if (Path(path).parent / ".zattrs").is_file() and not (Path(path) / ".zattrs").is_file() else None
        levels = dict(omezarr_levels(path))
        return levels[level] if level in levels else next(iter(levels.values()))
    return header_voxel_size_a(path)


@contextlib.contextmanager
def open_volume(path: str | os.PathLike[str], voxel_size_a: float | None = None, *, option: str = "--voxel-size") -> Iterator[Volume]:
    """A tomogram as a :class:`Volume`: an MRC memory-mapped (:func:`cryomine.io.mrc.open_mrc_volume`), a
    TOM ``.em`` or an OME-Zarr level read into memory; ``voxel_size_a`` overrides the header (an unset one is an error naming
    ``option``)."""
    if volume_kind(path) in ("em", "omezarr"):  # read into memory
        yield read_volume(path, voxel_size_a, option=option)
        return
    with open_mrc_volume(path, voxel_size_a, option=option) as vol:
        yield vol

"""Particles of one tomogram: which rows of a STAR file belong to a tomogram, and where their centres are.

Every step that cuts boxes out of a tomogram at STAR positions (``extract``, ``average`` from STAR + tomogram)
uses these two functions, so the same STAR and tomogram give the same particles whichever route a user takes.
"""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np

from cryomine.errors import InputError
from cryomine.io.star import ORIGIN_COLUMNS, ParticleTable, coordinates_xyz_voxels

__all__ = ["particle_centres_xyz", "same_tomo_name", "select_tomogram", "tomo_key", "tomo_names"]

_SUFFIXES = (".tomostar", ".mrc", ".rec", ".map", ".em")


def tomo_key(name: object) -> str:
    """A tomogram name without a ``.tomostar`` / volume-file suffix (WarpTools names tomograms ``TS_01.tomostar``,
    files are ``TS_01.mrc``): names with the same key are the same tomogram."""
    text = str(name)
    for suffix in _SUFFIXES:
        text = text.removesuffix(suffix)
    return text


def same_tomo_name(a: object, b: object) -> bool:
    """Whether two tomogram names are the same (:func:`tomo_key`)."""
    return tomo_key(a) == tomo_key(b)


def tomo_names(table: ParticleTable) -> np.ndarray | None:
    """``(n,)`` tomogram name per particle (``rlnTomoName``), or None when the table has none."""
    df = table.particles
    return df["rlnTomoName"].astype(str).to_numpy() if "rlnTomoName" in df.columns else None


def select_tomogram(table: ParticleTable, tomo_name: str, source: str | os.PathLike[str] | None = None
                    ) -> tuple[ParticleTable, str]:
    """The particles of tomogram ``tomo_name`` and the name they go by from now on.

    A table without ``rlnTomoName`` is taken whole (named ``tomo_name``). With names, the rows named
    ``tomo_name`` are kept; a table that names only one other tomogram is taken whole under its own name (the
    file was renamed; the particles' name is kept so that later steps join back onto them); several tomograms of
    which none is ``tomo_name`` is an :class:`InputError` naming them.
    """
    names = tomo_names(table)
    if names is None:
        return table, tomo_name
    keep = np.array([same_tomo_name(n, tomo_name) for n in names], bool)
    if keep.all():
        return table, str(names[0])
    if keep.any():
        return replace(table, particles=table.particles[keep].reset_index(drop=True)), str(names[keep][0])
    listed = sorted(set(names))
    if len(listed) == 1:
        return table, listed[0]
    raise InputError(f"lists tomograms {', '.join(listed[:6])} and none is {tomo_name!r} (use --tomo-name)", source)


def particle_centres_xyz(table: ParticleTable, voxel_size_a: float) -> np.ndarray:
    """``(n, 3)`` float64 particle centres (x y z voxels): ``rlnCoordinate`` minus ``rlnOrigin*Angst / voxel``
    (RELION's convention: the particle is at the coordinate minus its origin shift)."""
    coords = coordinates_xyz_voxels(table)
    df = table.particles
    if set(ORIGIN_COLUMNS) <= set(df.columns):
        coords = coords - df[list(ORIGIN_COLUMNS)].to_numpy(np.float64) / float(voxel_size_a)
    return coords

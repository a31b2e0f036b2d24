"""Checks shared by every reader, writer and grid function of volumes: shape, dtype, finiteness, voxel size."""

from __future__ import annotations

import math
import os

import numpy as np

from cryomine.errors import InputError
from cryomine.resources import release_pages


def check_volume(data: np.ndarray, source: str | os.PathLike[str] | None = None, *, name: str = "volume") -> np.ndarray:
    """Return ``data`` as a finite float32 ``(d, h, w)`` array or raise :class:`InputError`.

    ``source`` (a file name or parameter) is put at the start of the error message.
    """
    arr = np.asarray(data)
    if arr.ndim != 3:
        raise InputError(f"{name} must be 3-D (z, y, x), got a {arr.ndim}-D array of shape {arr.shape}", source)
    if 0 in arr.shape:
        raise InputError(f"{name} is empty (shape {arr.shape})", source)
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise InputError(f"{name} has non-real dtype {arr.dtype}", source)
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(np.isinf(arr).sum())
        raise InputError(f"{name} contains {n_nan} NaN and {n_inf} infinite voxels", source)
    return arr


def check_voxel_size(voxel_size_a: float, source: str | os.PathLike[str] | None = None) -> float:
    """Return ``voxel_size_a`` (Å) as float if it is finite and > 0, else raise :class:`InputError`."""
    try:
        value = float(voxel_size_a)
    except (TypeError, ValueError):
        raise InputError(f"voxel size must be a number of Å, got {voxel_size_a!r}", source) from None
    if not np.isfinite(value) or value <= 0:
        raise InputError(f"voxel size must be > 0 Å, got {value:g}", source)
    return value


def slab_moments(volume: np.ndarray, chunk_voxels: int = 2**24) -> tuple[float, float, float, float]:
    """``(min, max, mean, std)`` (population std) of a ``(d, h, w)`` volume read in z-slabs in float64 (works on
    memory maps; no full-size temporary). NaN/inf voxels make the results NaN/inf; nothing is checked."""
    d = volume.shape[0]
    per = max(1, chunk_voxels // max(1, volume.shape[1] * volume.shape[2]))
    n, mean, m2, lo, hi = 0, 0.0, 0.0, math.inf, -math.inf  # Chan et al. pairwise merge of per-slab moments
    for z in range(0, d, per):
        block = np.asarray(volume[z : z + per], dtype=np.float64)
        nb, mb = block.size, float(block.mean())
        m2b = float(np.square(block - mb).sum())
        delta = mb - mean
        m2 += m2b + delta * delta * n * nb / (n + nb)
        mean += delta * nb / (n + nb)
        n += nb
        lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
        release_pages(volume)  # a memory map read slab by slab keeps no more than a slab resident
    return lo, hi, mean, math.sqrt(m2 / n)


def volume_stats(volume: np.ndarray, source: str | os.PathLike[str] | None = None, chunk_voxels: int = 2**24) -> tuple[float, float]:
    """Mean and standard deviation of a ``(d, h, w)`` volume read in z-slabs (works on memory maps).

    Raises :class:`InputError` naming ``source`` for NaN/inf voxels or a constant volume.
    """
    lo, hi, mean, std = slab_moments(volume, chunk_voxels)
    if not (math.isfinite(lo) and math.isfinite(hi) and math.isfinite(mean)):
        per = max(1, chunk_voxels // max(1, volume.shape[1] * volume.shape[2]))
        for z in range(0, volume.shape[0], per):  # name the first slab that holds them
            block = np.asarray(volume[z : z + per], dtype=np.float64)
            if not np.isfinite(block).all():
                raise InputError(f"volume contains {int((~np.isfinite(block)).sum())} NaN/inf voxels (in z {z}..{z + len(block) - 1})", source)
    if not std > 1e-12 * max(1.0, abs(mean)):
        raise InputError("volume is constant (zero variance)", source)
    return mean, std


def resolve_voxel_size(
    header_a: float, override_a: float | None, source: str | os.PathLike[str] | None = None, option: str | None = None
) -> float:
    """The voxel size (Å) to use for a file whose header says ``header_a``.

    ``override_a`` (validated, named ``option`` in its error) wins when given: it corrects a missing or wrong
    header. Otherwise the header's value is used when it is finite and > 0. A header of 0 (the MRC default when
    nobody set it) or nonsense is never replaced by a guess: :class:`InputError` naming ``source`` and, when
    given, the ``option`` that sets it.
    """
    if override_a is not None:
        return check_voxel_size(override_a, option)
    value = float(header_a)
    if np.isfinite(value) and value > 0:
        return value
    fix = f"give the voxel size with {option} (Å)" if option else "set it in the file's header"
    raise InputError(f"header voxel size is {value:g} Å (unset): {fix}", source)

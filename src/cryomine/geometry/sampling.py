"""Sampling of rotations: uniform random rotations, a deterministic angular grid, geodesic distances.

All matrices follow the RELION convention of :mod:`cryomine.geometry.euler`: ``(..., 3, 3)`` float64 matrices
``A`` acting on ``(x, y, z)`` column vectors, and Euler triples are RELION ZYZ ``(rot, tilt, psi)`` in degrees.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike
from scipy.spatial.transform import Rotation

from cryomine.errors import InputError
from cryomine.geometry.euler import check_rotation_matrices, matrix_to_euler_zyz

__all__ = [
    "random_rotations",
    "random_eulers_zyz",
    "angular_sampling",
    "symmetry_group",
    "reduce_by_symmetry",
    "rotation_angle_deg",
    "MAX_GRID_ORIENTATIONS",
]

#: Largest number of orientations :func:`angular_sampling` will build (about a 0.9° step).
MAX_GRID_ORIENTATIONS = 20_000_000


def _check_count(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise InputError(f"number of rotations must be an integer >= 0, got {n!r}")
    return int(n)


def _check_rng(rng: np.random.Generator) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise InputError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, 3, 3)`` rotation matrices drawn uniformly (Haar measure) from SO(3).

    Uses :meth:`scipy.spatial.transform.Rotation.random` with ``rng``. The Haar measure is invariant under
    inversion, so these are uniformly distributed RELION ``A`` matrices (xyz, see :mod:`cryomine.geometry.euler`).
    """
    n = _check_count(n)
    rng = _check_rng(rng)
    if n == 0:
        return np.zeros((0, 3, 3))
    return Rotation.random(n, rng).as_matrix().reshape(n, 3, 3)


def random_eulers_zyz(n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, 3)`` uniformly distributed orientations as RELION ZYZ ``(rot, tilt, psi)`` in degrees.

    Ranges as in :func:`cryomine.geometry.euler.matrix_to_euler_zyz`; ``cos(tilt)`` is uniform on [-1, 1].
    """
    mats = random_rotations(n, rng)
    if mats.shape[0] == 0:
        return np.zeros((0, 3))
    return matrix_to_euler_zyz(mats)


def symmetry_group(symmetry: str) -> np.ndarray:
    """``(g, 3, 3)`` matrices (xyz) of the point group ``C<n>`` (n-fold axis z) or ``D<n>`` (plus 2-fold axes
    perpendicular to z, one along x), RELION's convention; ``C1`` is the identity alone."""
    text = str(symmetry).strip().upper()
    if len(text) < 2 or text[0] not in "CD" or not text[1:].isdigit() or not 1 <= int(text[1:]) <= 100:
        raise InputError(f"symmetry must be C<n> or D<n> with 1 <= n <= 100, got {symmetry!r}", "--symmetry")
    n = int(text[1:])
    a = np.arange(n) * (2 * np.pi / n)
    c, s_ = np.cos(a), np.sin(a)
    rz = np.zeros((n, 3, 3))
    rz[:, 0, 0], rz[:, 0, 1], rz[:, 1, 0], rz[:, 1, 1], rz[:, 2, 2] = c, -s_, s_, c, 1.0
    if text[0] == "C":
        return rz
    return np.concatenate([rz, rz @ np.diag([1.0, -1.0, -1.0])])  # D: the n-fold times the 2-fold about x


def reduce_by_symmetry(angles_deg: np.ndarray, step_deg: float, symmetry: str) -> np.ndarray:
    """The orientations of :func:`angular_sampling` ``(n, 3)`` grid ``angles_deg`` that a template of point group
    ``symmetry`` (:func:`symmetry_group`; axis z of the template) needs: ``A`` and ``A g`` rotate it alike.

    The first rotation (``rot``, about the template's own z) is kept in ``[0, 360 / n)`` (at the poles, where
    ``rot`` and ``psi`` coincide, ``psi``), plus one grid spacing so that no orientation near the sector's edge
    is lost; ``D<n>`` also keeps only ``tilt <= 90`` (its 2-fold maps ``tilt`` to ``180 - tilt``), plus one
    ring. Between ``1 / |G|`` and ``2 / |G|`` of the grid remains (the sparse rings near the poles keep
    relatively more); every orientation is within the grid's coverage of a kept one times a symmetry element.
    """
    group = symmetry_group(symmetry)
    n = group.shape[0] // (2 if str(symmetry).strip().upper().startswith("D") else 1)
    if group.shape[0] == 1:
        return np.asarray(angles_deg)
    tilts, n_rot, n_psi = _grid_layout(step_deg)
    ang = np.asarray(angles_deg, np.float64)
    ring = np.rint(ang[:, 1] / (180.0 / (len(tilts) - 1))).astype(int)
    spacing = 360.0 / n_rot[ring]
    pole = (ring == 0) | (ring == len(tilts) - 1)
    sector = 360.0 / n
    keep = np.where(pole, ang[:, 2] < sector + 360.0 / n_psi - 1e-6, np.mod(ang[:, 0], 360.0) < sector + spacing - 1e-6)
    if str(symmetry).strip().upper().startswith("D"):  # tilt <= 90, plus one ring (the rings' rot offsets alternate)
        keep &= ang[:, 1] < 90.0 + 180.0 / (len(tilts) - 1) - 1e-6
    return ang[keep]


def _grid_layout(step_deg: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Tilt ring angles, rot count per ring and psi count for ``step_deg``."""
    n_rings = max(1, math.ceil(180.0 / step_deg - 1e-9))
    tilts = np.arange(n_rings + 1) * (180.0 / n_rings)  # includes both poles
    sin_t = np.sin(np.deg2rad(tilts))
    sin_t[[0, -1]] = 0.0
    n_rot = np.maximum(1, np.ceil(360.0 * sin_t / step_deg - 1e-9)).astype(np.int64)
    n_psi = max(1, math.ceil(360.0 / step_deg - 1e-9))
    return tilts, n_rot, n_psi


def angular_sampling(step_deg: float, option: str | None = "--angular-step") -> np.ndarray:
    """Deterministic ``(n, 3)`` grid of RELION ZYZ ``(rot, tilt, psi)`` (degrees) covering SO(3) at ``step_deg``.

    Directions ``(rot, tilt)`` lie on equally spaced tilt rings ``tilt = i * 180 / ceil(180 / step)``
    (both poles included, one direction each); ring ``i`` holds ``ceil(360 sin(tilt) / step)`` equally spaced
    ``rot`` values, offset by half a spacing on every other ring. Each direction gets ``ceil(360 / step)``
    equally spaced ``psi`` in ``[0, 360)``. So neighbouring grid points are at most ``step_deg`` apart along
    every axis, and the grid holds about ``4 pi / step^2 * 2 pi / step = 8 pi^2 / step^3`` orientations (step in
    radians), i.e. roughly ``1.5e7 / step_deg^3`` (≈ 1.9e4 at 10°, 2.2e3 at 20°).

    Measured coverage (the geodesic distance from a uniformly random rotation to the nearest grid rotation)
    is about 0.66 step at the 95th percentile and about 0.8 step at most (1e5 random rotations, steps 5-30°).

    ``step_deg`` must be in ``(0, 180]``; grids over :data:`MAX_GRID_ORIENTATIONS` orientations are refused (the
    error names ``option``, the flag the step came from).
    """
    try:
        step = float(step_deg)
    except (TypeError, ValueError):
        raise InputError(f"angular step must be a number of degrees, got {step_deg!r}", option) from None
    if not math.isfinite(step) or step <= 0 or step > 180:
        raise InputError(f"angular step must be in (0, 180] degrees, got {step_deg!r}", option)
    total = 8 * math.pi**2 / math.radians(step) ** 3  # the grid's size to within a few %, before laying it out
    if total <= 2 * MAX_GRID_ORIENTATIONS:
        tilts, n_rot, n_psi = _grid_layout(step)
        total = int(n_rot.sum()) * n_psi
    if total > MAX_GRID_ORIENTATIONS:
        raise InputError(
            f"angular step {step:g}° would give {total:.3g} orientations "
            f"(limit {MAX_GRID_ORIENTATIONS}); use a larger step", option
        )
    dirs = []
    for i, (tilt, nr) in enumerate(zip(tilts, n_rot)):
        offset = 0.5 if (i % 2 == 1 and nr > 1) else 0.0
        rots = (np.arange(nr) + offset) * (360.0 / nr)
        dirs.append(np.stack([rots, np.full(nr, tilt)], axis=-1))
    directions = np.concatenate(dirs, axis=0)  # (n_dir, 2) rot, tilt
    psis = np.arange(n_psi) * (360.0 / n_psi)
    out = np.empty((directions.shape[0], n_psi, 3))
    out[:, :, :2] = directions[:, None, :]
    out[:, :, 2] = psis[None, :]
    out = out.reshape(-1, 3)
    out[:, 0] = np.mod(out[:, 0], 360.0)
    return out


def rotation_angle_deg(r1: ArrayLike, r2: ArrayLike) -> np.ndarray:
    """Geodesic distance (degrees, in [0, 180]) between rotation matrices, broadcast over leading axes.

    ``r1``, ``r2``: ``(..., 3, 3)`` rotation matrices (any axis convention, as long as both use the same).
    Returns the rotation angle of ``r1 @ r2.T`` computed as ``atan2(sin, cos)``, accurate near 0 and 180°.
    """
    a = check_rotation_matrices(r1, "first rotation matrix")
    b = check_rotation_matrices(r2, "second rotation matrix")
    rel = a @ np.swapaxes(b, -1, -2)
    cos = (np.trace(rel, axis1=-2, axis2=-1) - 1.0) / 2.0
    skew = np.stack(
        [rel[..., 2, 1] - rel[..., 1, 2], rel[..., 0, 2] - rel[..., 2, 0], rel[..., 1, 0] - rel[..., 0, 1]], axis=-1
    )
    sin = 0.5 * np.linalg.norm(skew, axis=-1)
    return np.rad2deg(np.arctan2(sin, cos))

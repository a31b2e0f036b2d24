"""The missing-wedge mask of a single-axis tilt series: which Fourier components a tilt series samples.

Geometry (shared by :mod:`cryomine.simulate`, template matching and subtomogram averaging):

- Volumes are ``(d, h, w)`` = ``(z, y, x)``; ``z`` is the beam direction at zero tilt and ``y`` is the single
  tilt axis.
- At tilt ``theta`` the beam runs along ``(z, x) = (cos theta, sin theta)`` and the detector coordinate is
  ``x' = x cos theta - z sin theta`` (see :mod:`cryomine.simulate.tilt`). By the central-slice theorem the
  projection samples the Fourier plane spanned by ``k_y`` and ``(k_z, k_x) = k (-sin theta, cos theta)``.
- The union over ``theta`` in ``[tilt_min, tilt_max]`` is the set of ``(k_z, k_x)`` directions whose angle
  ``phi = atan(-k_z / k_x)`` (taken in ``(-90, 90]`` degrees: a line and its mirror through the origin are the
  same Fourier line, by Hermitian symmetry) lies in the tilt range. It does not depend on ``k_y``. For
  ``-60..+60`` the sampled region is a double wedge around the ``k_x`` axis (120 of 180 degrees of
  directions); the *missing wedge* is the 60-degree double wedge around the ``k_z`` axis.
- The line ``k_z = k_x = 0`` (the tilt axis, every ``k_y``, DC included) lies in every projection and is always
  sampled.

Frequencies use numpy's FFT layout, NOT shifted: axis ``n`` holds ``np.fft.fftfreq(n)`` (``rfftfreq`` on the last
axis when ``rfft=True``), so the mask multiplies ``np.fft.fftn(vol)`` (or ``rfftn``) directly. Angles are
geometric, so non-cubic boxes are handled (frequencies in cycles per voxel on every axis).

Because a tilt series is a discrete set of angles, the real sampling is a fan of planes; the mask is the
continuous-range idealisation (correct below the Crowther frequency ``1 / (thickness * step_rad)``).
"""

from __future__ import annotations

import numpy as np

from cryomine.errors import InputError
from cryomine.geometry.grids import fft_frequencies
from cryomine.geometry.tilts import check_tilt_range

_EPS_DEG = 1e-6  # boundary tolerance: directions exactly on a tilt-range edge count as sampled


def _check(shape_zyx: tuple[int, int, int], tilt_min_deg: float, tilt_max_deg: float) -> tuple[int, int, int]:
    try:
        shape = tuple(int(s) for s in shape_zyx)
    except (TypeError, ValueError):
        raise InputError(f"wedge mask shape must be 3 integers (z, y, x), got {shape_zyx!r}") from None
    if len(shape) != 3 or min(shape) < 1:
        raise InputError(f"wedge mask shape must be 3 positive integers (z, y, x), got {shape_zyx!r}")
    check_tilt_range(tilt_min_deg, tilt_max_deg)
    return shape  # type: ignore[return-value]


def sampled_direction_mask_zx(
    kz: np.ndarray, kx: np.ndarray, tilt_min_deg: float = -60.0, tilt_max_deg: float = 60.0
) -> np.ndarray:
    """True where the Fourier direction ``(kz, kx)`` (broadcastable arrays, any units) is sampled by the range.

    The origin ``kz = kx = 0`` counts as sampled. Used by :func:`missing_wedge_mask`.
    """
    phi = np.degrees(np.arctan2(-np.asarray(kz, dtype=np.float64), np.asarray(kx, dtype=np.float64)))
    phi = np.where(phi > 90.0, phi - 180.0, phi)
    phi = np.where(phi <= -90.0, phi + 180.0, phi)  # now in (-90, 90]
    lo, hi = float(tilt_min_deg) - _EPS_DEG, float(tilt_max_deg) + _EPS_DEG
    sampled = (phi >= lo) & (phi <= hi)
    if tilt_min_deg <= -90.0 + _EPS_DEG:  # -90 and +90 are the same line
        sampled |= phi >= 90.0 - _EPS_DEG
    origin = (np.asarray(kz) == 0) & (np.asarray(kx) == 0)
    return sampled | origin


def missing_wedge_mask(
    shape_zyx: tuple[int, int, int],
    tilt_min_deg: float = -60.0,
    tilt_max_deg: float = 60.0,
    rfft: bool = False,
) -> np.ndarray:
    """Boolean Fourier mask, True where a y-axis tilt series over ``[tilt_min_deg, tilt_max_deg]`` samples.

    Args:
        shape_zyx: real-space box ``(d, h, w)``.
        tilt_min_deg, tilt_max_deg: tilt range in degrees, ``-90 <= min < max <= 90``.
        rfft: if True, return the half-spectrum layout of ``np.fft.rfftn`` (last axis ``w // 2 + 1``).

    Returns:
        ``(d, h, w)`` (or ``(d, h, w // 2 + 1)``) bool array in unshifted numpy FFT layout; the missing wedge is
        ``~mask``. Constant along ``k_y``.
    """
    d, h, w = _check(shape_zyx, tilt_min_deg, tilt_max_deg)
    kz, kx = fft_frequencies((d, w), rfft)
    plane = sampled_direction_mask_zx(kz, kx, tilt_min_deg, tilt_max_deg)  # (d, w')
    return np.ascontiguousarray(np.broadcast_to(plane[:, None, :], (d, h, plane.shape[1])))


#: The flips ``(flip_z, flip_y, flip_x)`` that map EVERY single-axis (y) tilt geometry onto itself: identity,
#: the mirror along the tilt axis (y), the 180-degree rotation about the tilt axis (z and x together) and both.
FLIPS_ANY_TILTS: tuple[tuple[bool, bool, bool], ...] = (
    (False, False, False), (False, True, False), (True, False, True), (True, True, True),
)
#: The four more flips (z alone or x alone, with or without y) that need a tilt set symmetric about 0.
FLIPS_SYMMETRIC_TILTS: tuple[tuple[bool, bool, bool], ...] = (
    (True, False, False), (False, False, True), (True, True, False), (False, True, True),
)


def tilts_symmetric(tilt_angles_deg, atol_deg: float = 1e-6) -> bool:
    """Whether the set of tilt angles equals its mirror image ``-angles`` (e.g. -60:3:60; not -54:3:60)."""
    a = np.sort(np.asarray(tilt_angles_deg, dtype=np.float64).ravel())
    return a.size > 0 and bool(np.allclose(a, np.sort(-a), atol=atol_deg, rtol=0.0))


def wedge_preserving_flips(tilt_angles_deg) -> tuple[tuple[bool, bool, bool], ...]:
    """The axis flips ``(flip_z, flip_y, flip_x)`` of a ``(..., d, h, w)`` volume that map the tilt geometry onto
    itself, so that a flipped reconstruction is a reconstruction of the flipped scene from the same tilts.

    In the ``(z, x)`` plane the beam at tilt ``theta`` runs along ``(cos theta, sin theta)``. Flipping y changes
    nothing; flipping z and x together (180 degrees about the tilt axis) reverses the beam (the same line
    integral); flipping x alone, or z alone, turns tilt ``theta`` into ``-theta``, so it only maps the geometry
    onto itself when the tilt set is symmetric. The flips are about the box centre ``(n - 1) / 2`` (plain array
    reversal), the rotation centre of the projector; in Fourier space they map ``k`` to ``-k`` per flipped axis,
    so the sampled region (and its missing wedge) maps onto itself. Returns 8 flips for a symmetric tilt set,
    else 4; the identity first.
    """
    return FLIPS_ANY_TILTS + (FLIPS_SYMMETRIC_TILTS if tilts_symmetric(tilt_angles_deg) else ())


def flip_volumes(volumes: np.ndarray, flip_zyx: tuple[bool, bool, bool]) -> np.ndarray:
    """``volumes`` ``(..., d, h, w)`` reversed along the flagged axes (a view; z = -3, y = -2, x = -1)."""
    axes = tuple(ax for ax, on in zip((-3, -2, -1), flip_zyx) if on)
    return np.flip(volumes, axis=axes) if axes else volumes

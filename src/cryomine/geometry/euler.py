"""RELION ZYZ Euler angles <-> rotation matrices.

Convention
----------
Orientations are RELION ZYZ intrinsic Euler angles ``(rot, tilt, psi)`` in degrees. The rotation matrix ``A``
is RELION's ``Euler_angles2matrix``: with ``ca, sa = cos, sin(rot)``, ``cb, sb = cos, sin(tilt)``,
``cg, sg = cos, sin(psi)`` and ``cc = cb*ca, cs = cb*sa, sc = sb*ca, ss = sb*sa``::

    A = [[ cg*cc - sg*sa,  cg*cs + sg*ca, -cg*sb],
         [-sg*cc - cg*sa, -sg*cs + cg*ca,  sg*sb],
         [ sc,             ss,             cb   ]]

i.e. ``A = Rz(psi) @ Ry(tilt) @ Rz(rot)`` with the *passive* elementary matrices
``Rz(a) = [[c, s, 0], [-s, c, 0], [0, 0, 1]]``, ``Ry(b) = [[c, 0, -s], [0, 1, 0], [s, 0, c]]``; equivalently
``scipy.spatial.transform.Rotation.from_euler("ZYZ", [rot, tilt, psi], degrees=True).inv().as_matrix()``.

``A`` acts on column vectors ordered ``(x, y, z)`` and rotates the reference into the particle: a feature at
offset ``r`` (xyz, from the box centre) in the reference appears at ``A @ r`` in the particle (this is how
RELION's projector samples the reference). For example ``rot = 90`` (tilt = psi = 0) maps the x axis to -y.

Arrays in cryomine are indexed ``(z, y, x)``; :func:`xyz_to_zyx_matrix` converts a matrix acting on
``(x, y, z)`` vectors into the one acting on ``(z, y, x)`` index vectors (and :func:`zyx_to_xyz_matrix` back).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from cryomine.errors import InputError

__all__ = [
    "euler_zyz_to_matrix",
    "matrix_to_euler_zyz",
    "xyz_to_zyx_matrix",
    "zyx_to_xyz_matrix",
    "check_rotation_matrices",
]


def _as_float_array(values: ArrayLike, name: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be numeric, got {type(values).__name__}") from None
    return arr


def euler_zyz_to_matrix(angles_deg: ArrayLike) -> np.ndarray:
    """RELION rotation matrices from ZYZ Euler angles.

    Parameters
    ----------
    angles_deg
        ``(..., 3)`` array of ``(rot, tilt, psi)`` in degrees (any range).

    Returns
    -------
    ``(..., 3, 3)`` float64 matrices ``A`` acting on ``(x, y, z)`` column vectors (see the module docstring).
    """
    ang = _as_float_array(angles_deg, "Euler angles")
    if ang.ndim == 0 or ang.shape[-1] != 3:
        raise InputError(f"Euler angles must have shape (..., 3) (rot, tilt, psi), got shape {ang.shape}")
    if not np.isfinite(ang).all():
        raise InputError(f"Euler angles contain {int((~np.isfinite(ang)).sum())} non-finite values")
    rad = np.deg2rad(ang)
    ca, sa = np.cos(rad[..., 0]), np.sin(rad[..., 0])
    cb, sb = np.cos(rad[..., 1]), np.sin(rad[..., 1])
    cg, sg = np.cos(rad[..., 2]), np.sin(rad[..., 2])
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    out = np.empty(ang.shape[:-1] + (3, 3), dtype=np.float64)
    out[..., 0, 0] = cg * cc - sg * sa
    out[..., 0, 1] = cg * cs + sg * ca
    out[..., 0, 2] = -cg * sb
    out[..., 1, 0] = -sg * cc - cg * sa
    out[..., 1, 1] = -sg * cs + cg * ca
    out[..., 1, 2] = sg * sb
    out[..., 2, 0] = sc
    out[..., 2, 1] = ss
    out[..., 2, 2] = cb
    return out


def check_rotation_matrices(matrices: ArrayLike, name: str = "rotation matrix", atol: float = 1e-3) -> np.ndarray:
    """Return ``matrices`` as a float64 ``(..., 3, 3)`` array of proper rotations or raise :class:`InputError`.

    A matrix is accepted when it is finite, ``max|R R^T - I| <= atol`` and ``det(R) > 0``.
    """
    m = _as_float_array(matrices, name)
    if m.ndim < 2 or m.shape[-2:] != (3, 3):
        raise InputError(f"{name} must have shape (..., 3, 3), got shape {m.shape}")
    if not np.isfinite(m).all():
        raise InputError(f"{name} contains {int((~np.isfinite(m)).sum())} non-finite values")
    if m.size:
        err = np.abs(m @ np.swapaxes(m, -1, -2) - np.eye(3)).max()
        if err > atol:
            raise InputError(f"{name} is not orthonormal (max |R R^T - I| = {err:.3g} > {atol:g})")
        det = np.linalg.det(m)
        if (det <= 0).any():
            raise InputError(f"{name} is a reflection, not a rotation (det = {float(det.min()):.3g})")
    return m


def _wrap_deg(a: np.ndarray) -> np.ndarray:
    """Wrap angles (degrees) into (-180, 180]."""
    w = np.mod(a + 180.0, 360.0) - 180.0  # [-180, 180)
    return np.where(w <= -180.0, w + 360.0, w)


def matrix_to_euler_zyz(matrices: ArrayLike) -> np.ndarray:
    """RELION ZYZ Euler angles (degrees) of rotation matrices; the inverse of :func:`euler_zyz_to_matrix`.

    Parameters
    ----------
    matrices
        ``(..., 3, 3)`` proper rotation matrices acting on ``(x, y, z)`` vectors (RELION ``A`` convention).

    Returns
    -------
    ``(..., 3)`` float64 ``(rot, tilt, psi)`` with the canonical ranges ``tilt`` in ``[0, 180]`` and ``rot``,
    ``psi`` in ``(-180, 180]``. At gimbal lock (``tilt`` = 0 or 180, where only ``rot + psi`` resp.
    ``psi - rot`` is defined) ``rot`` is set to 0 and ``psi`` carries the whole in-plane angle. Near gimbal
    lock the split stays numerically consistent: ``euler_zyz_to_matrix`` of the result reproduces the input
    to ~1e-15.
    """
    m = check_rotation_matrices(matrices)
    a20, a21, a22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    sb = np.hypot(a20, a21)
    tilt = np.arctan2(sb, a22)
    gimbal = sb < 1e-12
    rot = np.where(gimbal, 0.0, np.arctan2(a21, a20))
    # Upper 2x2 block: A00 + A11 = (1 + cb) cos(rot + psi), A01 - A10 = (1 + cb) sin(rot + psi),
    #                  A11 - A00 = (1 - cb) cos(psi - rot), A01 + A10 = (1 - cb) sin(psi - rot).
    # Using the well-conditioned combination on each hemisphere keeps psi consistent with rot.
    plus = np.arctan2(m[..., 0, 1] - m[..., 1, 0], m[..., 0, 0] + m[..., 1, 1])
    minus = np.arctan2(m[..., 0, 1] + m[..., 1, 0], m[..., 1, 1] - m[..., 0, 0])
    psi = np.where(a22 >= 0, plus - rot, minus + rot)
    out = np.stack([rot, tilt, psi], axis=-1)
    out = np.rad2deg(out)
    out[..., 0] = _wrap_deg(out[..., 0])
    out[..., 2] = _wrap_deg(out[..., 2])
    return out


def xyz_to_zyx_matrix(m: ArrayLike) -> np.ndarray:
    """Convert ``(..., 3, 3)`` matrices acting on ``(x, y, z)`` vectors to ones acting on ``(z, y, x)`` vectors.

    This reverses rows and columns: ``P @ m @ P`` with ``P`` the axis-reversal permutation.
    """
    arr = _as_float_array(m, "matrix")
    if arr.ndim < 2 or arr.shape[-2:] != (3, 3):
        raise InputError(f"matrix must have shape (..., 3, 3), got shape {arr.shape}")
    return arr[..., ::-1, ::-1].copy()


def zyx_to_xyz_matrix(m: ArrayLike) -> np.ndarray:
    """Convert ``(..., 3, 3)`` matrices acting on ``(z, y, x)`` vectors to ones acting on ``(x, y, z)`` vectors.

    The conversion is its own inverse (reverse rows and columns), so this equals :func:`xyz_to_zyx_matrix`.
    """
    return xyz_to_zyx_matrix(m)

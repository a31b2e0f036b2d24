"""Rotating and shifting volumes with RELION-convention rotation matrices.

:func:`rotate_volume` applies a rotation *actively*: with ``A`` a RELION matrix (see
:mod:`cryomine.geometry.euler`, acting on ``(x, y, z)`` vectors), a feature at offset ``r`` (xyz, voxels) from
the centre of rotation ``c`` in the input appears at ``c + A @ r + s`` in the output, where ``s`` is the shift.
Rotating a reference by ``euler_zyz_to_matrix(angles)`` therefore gives the particle as RELION sees it.

The centre of rotation defaults to voxel index ``n // 2`` on every axis: the Fourier/RELION convention, also
the origin of a ``fftshift``-ed FFT box (for odd ``n`` the exact middle, for even ``n`` the voxel just past it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage

from cryomine.errors import InputError
from cryomine.geometry.euler import check_rotation_matrices, xyz_to_zyx_matrix
from cryomine.geometry.validate import check_volume

__all__ = ["rotate_volume", "default_center_zyx"]


def default_center_zyx(shape: Sequence[int]) -> np.ndarray:
    """Centre of rotation ``(z, y, x)`` (voxel indices) of a ``(d, h, w)`` box: ``n // 2`` on each axis."""
    return np.array([n // 2 for n in shape], dtype=np.float64)


def _vec3(value: ArrayLike, name: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be 3 numbers (z, y, x), got {value!r}") from None
    if arr.shape != (3,):
        raise InputError(f"{name} must be 3 numbers (z, y, x), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise InputError(f"{name} must be finite, got {arr.tolist()}")
    return arr


def rotate_volume(
    volume: ArrayLike,
    matrix_xyz: ArrayLike,
    center_zyx: ArrayLike | None = None,
    shift_zyx: ArrayLike = (0.0, 0.0, 0.0),
    order: int = 1,
    cval: float = 0.0,
) -> np.ndarray:
    """Rotate ``volume`` actively by ``matrix_xyz`` about ``center_zyx``, then shift it by ``shift_zyx``.

    Parameters
    ----------
    volume
        ``(d, h, w)`` volume indexed ``(z, y, x)``.
    matrix_xyz
        ``(3, 3)`` proper rotation acting on ``(x, y, z)`` vectors (RELION ``A``): a feature at offset ``r``
        (xyz) from the centre moves to offset ``A @ r``.
    center_zyx
        Centre of rotation as ``(z, y, x)`` voxel indices; default ``n // 2`` on each axis.
    shift_zyx
        Shift ``(z, y, x)`` in voxels applied after the rotation.
    order
        Spline interpolation order, 0-5 (1 = trilinear).
    cval
        Value for output voxels that map outside the input.

    Returns
    -------
    ``(d, h, w)`` float32 volume ``out(x) = in(A^T (x - c - s) + c)`` (in xyz; evaluated via
    :func:`scipy.ndimage.affine_transform` on zyx indices).
    """
    vol = check_volume(volume, name="volume")
    a_xyz = check_rotation_matrices(matrix_xyz, "rotation matrix")
    if a_xyz.shape != (3, 3):
        raise InputError(f"rotation matrix must have shape (3, 3), got shape {a_xyz.shape}")
    c = default_center_zyx(vol.shape) if center_zyx is None else _vec3(center_zyx, "center_zyx")
    s = _vec3(shift_zyx, "shift_zyx")
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or not 0 <= order <= 5:
        raise InputError(f"interpolation order must be an integer in 0..5, got {order!r}")
    try:
        fill = float(cval)
    except (TypeError, ValueError):
        raise InputError(f"cval must be a number, got {cval!r}") from None
    if not np.isfinite(fill):
        raise InputError(f"cval must be finite, got {cval!r}")

    inv_zyx = xyz_to_zyx_matrix(a_xyz.T)  # maps output offsets back to input offsets, zyx
    offset = c - inv_zyx @ (c + s)
    return ndimage.affine_transform(
        vol, inv_zyx, offset=offset, output_shape=vol.shape, order=int(order), mode="grid-constant", cval=fill
    ).astype(np.float32, copy=False)

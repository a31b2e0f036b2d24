"""Rotation geometry: RELION ZYZ Euler angles, rotation sampling and volume rotation.

Convention: orientations are RELION ZYZ intrinsic Euler angles ``(rot, tilt, psi)`` in degrees, and the
rotation matrix is RELION's ``A = Euler_angles2matrix(rot, tilt, psi)`` (equal to scipy
``Rotation.from_euler("ZYZ", [rot, tilt, psi], degrees=True).inv().as_matrix()``). ``A`` acts on ``(x, y, z)``
column vectors and rotates the reference into the particle: a feature at offset ``r`` (xyz, from the box
centre ``n // 2``) in the reference appears at ``A @ r`` in the particle. Volumes are indexed ``(z, y, x)``;
use :func:`xyz_to_zyx_matrix` to get the matrix acting on index vectors. See :mod:`cryomine.geometry.euler`.
"""

from __future__ import annotations

from cryomine.geometry.boxes import box_starts, cut_boxes, paste_mask, place_in_box, read_window, window_slices
from cryomine.geometry.euler import (
    check_rotation_matrices,
    euler_zyz_to_matrix,
    matrix_to_euler_zyz,
    xyz_to_zyx_matrix,
    zyx_to_xyz_matrix,
)
from cryomine.geometry.grids import fft_frequencies, frequency_magnitude
from cryomine.geometry.rotate_torch import rotate_volumes
from cryomine.geometry.sampling import (
    MAX_GRID_ORIENTATIONS,
    angular_sampling,
    random_eulers_zyz,
    random_rotations,
    reduce_by_symmetry,
    rotation_angle_deg,
    symmetry_group,
)
from cryomine.geometry.transform import default_center_zyx, rotate_volume
from cryomine.geometry.validate import check_volume, check_voxel_size
from cryomine.geometry.wedge import flip_volumes, missing_wedge_mask, tilts_symmetric, wedge_preserving_flips

__all__ = [
    "fft_frequencies",
    "frequency_magnitude",
    "box_starts",
    "cut_boxes",
    "paste_mask",
    "place_in_box",
    "read_window",
    "window_slices",
    "check_volume",
    "check_voxel_size",
    "MAX_GRID_ORIENTATIONS",
    "angular_sampling",
    "reduce_by_symmetry",
    "symmetry_group",
    "check_rotation_matrices",
    "default_center_zyx",
    "euler_zyz_to_matrix",
    "matrix_to_euler_zyz",
    "random_eulers_zyz",
    "random_rotations",
    "missing_wedge_mask",
    "flip_volumes",
    "tilts_symmetric",
    "wedge_preserving_flips",
    "rotate_volume",
    "rotate_volumes",
    "rotation_angle_deg",
    "xyz_to_zyx_matrix",
    "zyx_to_xyz_matrix",
]

"""The batched torch rotation agrees with the scipy reference implementation (same convention and centre)."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from cryomine.geometry import euler_zyz_to_matrix, random_eulers_zyz, rotate_volume, rotate_volumes


def test_matches_scipy_rotate_volume_on_odd_box():
    rng = np.random.default_rng(4)
    vol = ndimage.gaussian_filter(rng.random((21, 23, 25)), 2).astype(np.float32)
    eulers = random_eulers_zyz(5, rng)
    shifts = rng.uniform(-2, 2, (5, 3))
    mats = euler_zyz_to_matrix(eulers)
    out = rotate_volumes(torch.from_numpy(vol).expand(5, *vol.shape), torch.from_numpy(mats.astype(np.float32)),
                         torch.from_numpy(shifts.astype(np.float32))).numpy()  # fmt: skip
    for i in range(5):
        ref = rotate_volume(vol, mats[i], shift_zyx=shifts[i], order=1)
        assert np.abs(out[i] - ref).max() < 1e-4 * np.abs(ref).max() + 1e-5


def test_rot90_moves_x_blob_to_minus_y_into_larger_output():
    vol = np.zeros((15, 17, 19), np.float32)
    vol[7, 8, 9 + 4] = 1.0  # +4 voxels along x from the centre (7, 8, 9)
    out = rotate_volumes(torch.from_numpy(vol)[None], torch.from_numpy(euler_zyz_to_matrix([90.0, 0, 0]).astype(np.float32))[None],
                         out_shape=(31, 33, 35))[0].numpy()  # fmt: skip
    z, y, x = np.unravel_index(out.argmax(), out.shape)
    assert (z, y, x) == (15, 16 - 4, 17)


def test_cpu_loop_equals_grid_sample_on_odd_shapes():
    rng = np.random.default_rng(9)
    vols = torch.from_numpy(rng.random((3, 13, 16, 11)).astype(np.float32))
    mats = torch.from_numpy(euler_zyz_to_matrix(random_eulers_zyz(3, rng)).astype(np.float32))
    shifts = torch.from_numpy(rng.uniform(-3, 3, (3, 3)).astype(np.float32))
    for out_shape in (None, (17, 9, 20)):
        fast = rotate_volumes(vols, mats, shifts, out_shape)
        ref = rotate_volumes(vols, mats, shifts, out_shape, backend_torch=True)
        assert fast.shape == ref.shape
        np.testing.assert_allclose(fast.numpy(), ref.numpy(), atol=2e-5)

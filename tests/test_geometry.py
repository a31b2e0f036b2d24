"""Tests for cryomine.geometry: RELION Euler convention, sampling, volume rotation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage, stats
from scipy.spatial.transform import Rotation

from cryomine.errors import InputError
from cryomine.geometry import (
    angular_sampling,
    cut_boxes,
    euler_zyz_to_matrix,
    matrix_to_euler_zyz,
    paste_mask,
    random_eulers_zyz,
    random_rotations,
    rotate_volume,
    rotation_angle_deg,
    xyz_to_zyx_matrix,
    zyx_to_xyz_matrix,
)

SHAPE = (21, 23, 25)  # odd, non-cubic (z, y, x)


def relion_matrix(rot: float, tilt: float, psi: float) -> np.ndarray:
    """RELION Euler_angles2matrix, written out literally (independent of the package)."""
    a, b, g = np.deg2rad([rot, tilt, psi])
    ca, sa, cb, sb, cg, sg = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(g), np.sin(g)
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    return np.array(
        [
            [cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb],
            [-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb],
            [sc, ss, cb],
        ]
    )


def random_angles(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform([-360, -360, -360], [360, 360, 360], size=(n, 3))


def nearest_angle_deg(queries: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """Geodesic distance from each query rotation to its nearest sample (max trace = min angle)."""
    qf, sf = queries.reshape(-1, 9), samples.reshape(-1, 9)
    best = np.concatenate([np.argmax(qf[i : i + 500] @ sf.T, axis=1) for i in range(0, len(qf), 500)])
    return rotation_angle_deg(queries, samples[best])


def blob(shape, center_zyx, sigma=1.2) -> np.ndarray:
    zz, yy, xx = np.indices(shape, dtype=np.float64)
    cz, cy, cx = center_zyx
    return np.exp(-((zz - cz) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))


def com_zyx(vol: np.ndarray) -> np.ndarray:
    return np.array(ndimage.center_of_mass(np.clip(vol, 0, None)))


# ----------------------------------------------------------------------------------------------- Euler angles


def test_matrices_are_proper_rotations():
    mats = euler_zyz_to_matrix(random_angles(500, 1))
    assert mats.shape == (500, 3, 3)
    np.testing.assert_allclose(mats @ np.swapaxes(mats, -1, -2), np.broadcast_to(np.eye(3), mats.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(mats), 1.0, atol=1e-12)


def test_matrix_equals_literal_relion_formula_and_scipy():
    angles = random_angles(200, 2)
    mats = euler_zyz_to_matrix(angles)
    literal = np.stack([relion_matrix(*a) for a in angles])
    np.testing.assert_allclose(mats, literal, atol=1e-12)
    scipy_m = Rotation.from_euler("ZYZ", angles, degrees=True).inv().as_matrix()
    np.testing.assert_allclose(mats, scipy_m, atol=1e-12)
    # leading batch axes are kept
    assert euler_zyz_to_matrix(angles.reshape(10, 20, 3)).shape == (10, 20, 3, 3)
    np.testing.assert_allclose(euler_zyz_to_matrix(angles[7]), literal[7], atol=1e-12)


def test_known_axis_maps():
    x, y, z = np.eye(3)
    # rot = 90: x -> -y, y -> x
    a = euler_zyz_to_matrix([90, 0, 0])
    np.testing.assert_allclose(a @ x, -y, atol=1e-12)
    np.testing.assert_allclose(a @ y, x, atol=1e-12)
    # tilt = 90: x -> z, z -> -x
    b = euler_zyz_to_matrix([0, 90, 0])
    np.testing.assert_allclose(b @ x, z, atol=1e-12)
    np.testing.assert_allclose(b @ z, -x, atol=1e-12)
    # the third row is the direction (sin t cos r, sin t sin r, cos t)
    np.testing.assert_allclose(euler_zyz_to_matrix([30, 40, 77])[2], relion_matrix(30, 40, 0)[2], atol=1e-12)


def test_euler_round_trip_including_gimbal_lock():
    angles = np.concatenate(
        [
            random_angles(1000, 3),
            [[30, 0, 40], [30, 180, 40], [-170, 1e-9, 20], [50, 180 - 1e-9, -60], [10, 1e-5, 5], [0, 90, 0]],
            [[180, 90, 180], [-180, 45, -180], [0, 0, 0], [0, 180, 0]],
        ]
    )
    mats = euler_zyz_to_matrix(angles)
    back = matrix_to_euler_zyz(mats)
    np.testing.assert_allclose(euler_zyz_to_matrix(back), mats, atol=1e-13)
    assert (back[:, 1] >= 0).all() and (back[:, 1] <= 180).all()
    assert (back[:, [0, 2]] > -180).all() and (back[:, [0, 2]] <= 180).all()
    # away from gimbal lock and inside the canonical range the angles themselves come back
    canon = np.array([[10.0, 20.0, 30.0], [-170.0, 135.0, 179.0], [180.0, 90.0, -45.0]])
    np.testing.assert_allclose(matrix_to_euler_zyz(euler_zyz_to_matrix(canon)), canon, atol=1e-9)
    # at exact gimbal lock rot is 0 and psi carries the in-plane angle
    np.testing.assert_allclose(matrix_to_euler_zyz(euler_zyz_to_matrix([30, 0, 40])), [0, 0, 70], atol=1e-9)
    np.testing.assert_allclose(matrix_to_euler_zyz(euler_zyz_to_matrix([30, 180, 40])), [0, 180, 10], atol=1e-9)


def test_xyz_zyx_conversion():
    rng = np.random.default_rng(4)
    m = euler_zyz_to_matrix(random_angles(20, 4))
    v_xyz = rng.normal(size=(20, 3))
    m_zyx = xyz_to_zyx_matrix(m)
    out_zyx = np.einsum("nij,nj->ni", m_zyx, v_xyz[:, ::-1])
    np.testing.assert_allclose(out_zyx[:, ::-1], np.einsum("nij,nj->ni", m, v_xyz), atol=1e-12)
    np.testing.assert_allclose(zyx_to_xyz_matrix(m_zyx), m, atol=0)


# ------------------------------------------------------------------------------------------------- sampling


def test_rotation_angle_deg():
    for theta in [1e-6, 1.0, 30.0, 120.0, 179.999, 180.0]:
        r = Rotation.from_rotvec(np.deg2rad(theta) * np.array([1.0, 2.0, -0.5]) / np.sqrt(5.25)).as_matrix()
        base = random_rotations(1, np.random.default_rng(5))[0]
        assert rotation_angle_deg(r @ base, base) == pytest.approx(theta, rel=1e-6, abs=1e-9)
    a, b = random_rotations(300, np.random.default_rng(6)), random_rotations(300, np.random.default_rng(7))
    d = rotation_angle_deg(a, b)
    np.testing.assert_allclose(d, np.rad2deg(Rotation.from_matrix(a @ np.swapaxes(b, 1, 2)).magnitude()), atol=1e-8)
    np.testing.assert_allclose(d, rotation_angle_deg(b, a), atol=1e-10)
    assert rotation_angle_deg(a[:, None], b[None, :50]).shape == (300, 50)


def test_random_rotations_uniform():
    rng = np.random.default_rng(8)
    mats = random_rotations(20000, rng)
    assert mats.shape == (20000, 3, 3)
    np.testing.assert_allclose(np.linalg.det(mats), 1.0, atol=1e-10)
    # Haar measure: every matrix entry has mean 0 (std 1/sqrt(3), so the standard error here is ~0.004)
    assert np.abs(mats.mean(axis=0)).max() < 0.02
    eul = matrix_to_euler_zyz(mats)
    assert stats.kstest(np.cos(np.deg2rad(eul[:, 1])), "uniform", args=(-1, 2)).pvalue > 0.01
    assert stats.kstest(eul[:, 0], "uniform", args=(-180, 360)).pvalue > 0.01
    assert stats.kstest(eul[:, 2], "uniform", args=(-180, 360)).pvalue > 0.01
    # seeded: same generator state -> same rotations; Euler variant agrees with the matrices
    first = random_rotations(5, np.random.default_rng(9))
    np.testing.assert_array_equal(first, random_rotations(5, np.random.default_rng(9)))
    np.testing.assert_allclose(
        euler_zyz_to_matrix(random_eulers_zyz(5, np.random.default_rng(9))),
        random_rotations(5, np.random.default_rng(9)),
        atol=1e-10,
    )


@pytest.mark.parametrize("step", [10.0, 25.0])
def test_angular_sampling_covers_so3(step):
    eul = angular_sampling(step)
    n_expected = 8 * np.pi**2 / np.deg2rad(step) ** 3
    assert 0.95 * n_expected < len(eul) < 1.4 * n_expected
    assert (eul[:, 1] >= 0).all() and (eul[:, 1] <= 180).all()
    assert (eul[:, 2] >= 0).all() and (eul[:, 2] < 360).all()
    samples = euler_zyz_to_matrix(eul)
    d = nearest_angle_deg(random_rotations(2000, np.random.default_rng(10)), samples)
    # measured (1e5 queries, steps 5-30): 95th percentile ~0.66 step, max ~0.79 step
    assert np.percentile(d, 95) <= 0.7 * step
    assert d.max() <= 0.85 * step
    # and the grid is not wastefully dense: the nearest other grid point is typically ~ one step away
    sub = samples[:: max(1, len(samples) // 300)]
    tr = sub.reshape(-1, 9) @ samples.reshape(-1, 9).T
    tr[np.arange(len(sub)), np.arange(0, len(samples), max(1, len(samples) // 300))[: len(sub)]] = -np.inf
    nn = rotation_angle_deg(sub, samples[np.argmax(tr, axis=1)])
    assert np.median(nn) > 0.8 * step


# --------------------------------------------------------------------------------------------- rotate_volume


def test_rotate_volume_rot90_moves_x_to_minus_y():
    c = np.array(SHAPE) // 2
    vol = blob(SHAPE, c + [0, 0, 5])  # +5 voxels along x
    out = rotate_volume(vol, euler_zyz_to_matrix([90, 0, 0]))
    np.testing.assert_allclose(com_zyx(out), c + [0, -5, 0], atol=0.01)  # -5 along y
    assert out.shape == SHAPE and out.dtype == np.float32


def test_rotate_volume_tilt90_moves_x_to_z_and_z_to_minus_x():
    c = np.array(SHAPE) // 2
    out = rotate_volume(blob(SHAPE, c + [0, 0, 5]), euler_zyz_to_matrix([0, 90, 0]))
    np.testing.assert_allclose(com_zyx(out), c + [5, 0, 0], atol=0.01)
    out = rotate_volume(blob(SHAPE, c + [4, 0, 0]), euler_zyz_to_matrix([0, 90, 0]))
    np.testing.assert_allclose(com_zyx(out), c + [0, 0, -4], atol=0.01)


def test_rotate_volume_general_rotation_and_shift():
    rng = np.random.default_rng(11)
    c = np.array(SHAPE) // 2
    for angles in random_angles(3, 12):
        r_xyz = rng.uniform(-4, 4, size=3)
        shift_zyx = rng.uniform(-2, 2, size=3)
        a = euler_zyz_to_matrix(angles)
        out = rotate_volume(blob(SHAPE, c + r_xyz[::-1], sigma=1.5), a, shift_zyx=shift_zyx, order=3)
        expected_zyx = c + (a @ r_xyz)[::-1] + shift_zyx
        np.testing.assert_allclose(com_zyx(out), expected_zyx, atol=0.01)
    # custom centre: a blob at the centre of rotation stays put
    centre = np.array([8.0, 12.5, 14.0])
    out = rotate_volume(blob(SHAPE, centre), euler_zyz_to_matrix([33, 71, -20]), center_zyx=centre)
    np.testing.assert_allclose(com_zyx(out), centre, atol=0.01)


def test_rotate_then_inverse_recovers_volume():
    rng = np.random.default_rng(13)
    noise = ndimage.gaussian_filter(rng.normal(size=SHAPE), 2.0)
    zz, yy, xx = np.indices(SHAPE)
    c = np.array(SHAPE) // 2
    r2 = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2
    vol = noise * np.exp(-r2 / (2 * 4.0**2))  # smooth and confined to the box
    a = euler_zyz_to_matrix([40, 65, -110])
    rotated = rotate_volume(vol, a)
    back = rotate_volume(rotated, a.T)
    assert np.corrcoef(back.ravel(), vol.ravel())[0, 1] > 0.99
    # while the rotated volume itself differs from the input
    assert np.corrcoef(rotated.ravel(), vol.ravel())[0, 1] < 0.5


def test_identity_rotation_is_exact():
    vol = np.random.default_rng(14).normal(size=SHAPE).astype(np.float32)
    np.testing.assert_allclose(rotate_volume(vol, np.eye(3)), vol, atol=1e-6)
    shifted = rotate_volume(vol, np.eye(3), shift_zyx=(1, -2, 3), order=0)
    np.testing.assert_array_equal(shifted[1:, :-2, 3:], vol[:-1, 2:, :-3])


# ----------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call",
    [
        lambda: euler_zyz_to_matrix([np.nan, 0, 0]),
        lambda: euler_zyz_to_matrix([0, np.inf, 0]),
        lambda: euler_zyz_to_matrix([1, 2, 3, 4]),
        lambda: euler_zyz_to_matrix(np.zeros((5, 2))),
        lambda: euler_zyz_to_matrix(5.0),
        lambda: euler_zyz_to_matrix("abc"),
        lambda: matrix_to_euler_zyz(np.ones((3, 3))),
        lambda: matrix_to_euler_zyz(np.diag([1.0, 1.0, -1.0])),
        lambda: matrix_to_euler_zyz(np.eye(4)),
        lambda: matrix_to_euler_zyz(np.full((3, 3), np.nan)),
        lambda: xyz_to_zyx_matrix(np.eye(2)),
        lambda: angular_sampling(0),
        lambda: angular_sampling(-5),
        lambda: angular_sampling(181),
        lambda: angular_sampling(np.nan),
        lambda: angular_sampling("ten"),
        lambda: angular_sampling(0.1),  # far too many orientations
        lambda: random_rotations(-1, np.random.default_rng(0)),
        lambda: random_rotations(2.5, np.random.default_rng(0)),
        lambda: random_rotations(3, 42),
        lambda: rotation_angle_deg(np.eye(3), np.ones((3, 3))),
        lambda: rotate_volume(np.zeros((5, 5)), np.eye(3)),
        lambda: rotate_volume(np.full(SHAPE, np.nan), np.eye(3)),
        lambda: rotate_volume(np.zeros(SHAPE), np.eye(4)),
        lambda: rotate_volume(np.zeros(SHAPE), np.zeros((2, 3, 3)) + np.eye(3)),
        lambda: rotate_volume(np.zeros(SHAPE), 2 * np.eye(3)),
        lambda: rotate_volume(np.zeros(SHAPE), np.eye(3), shift_zyx=(1, 2)),
        lambda: rotate_volume(np.zeros(SHAPE), np.eye(3), center_zyx=(1, np.nan, 2)),
        lambda: rotate_volume(np.zeros(SHAPE), np.eye(3), order=7),
        lambda: rotate_volume(np.zeros(SHAPE), np.eye(3), cval=np.inf),
    ],
)
def test_bad_input_raises_input_error(call):
    with pytest.raises(InputError):
        call()


def test_default_centre_is_n_over_2_on_even_axes():
    shape = (20, 22, 25)  # two even axes: n // 2 differs from (n - 1) / 2
    c = np.array(shape) // 2
    out = rotate_volume(blob(shape, c), euler_zyz_to_matrix([50, 100, 20]))
    np.testing.assert_allclose(com_zyx(out), c, atol=0.01)
    out = rotate_volume(blob(shape, c + [0, 0, 5]), euler_zyz_to_matrix([90, 0, 0]))
    np.testing.assert_allclose(com_zyx(out), c + [0, -5, 0], atol=0.01)


@pytest.mark.parametrize("rfft", [True, False])
def test_frequency_grid_matches_numpy_fft_layout(rfft):
    """The one frequency grid: on an odd, non-cubic shape, k of each axis is numpy's fftfreq (rfftfreq last)."""
    from cryomine.geometry import fft_frequencies, frequency_magnitude

    shape = (5, 8, 7)
    kz, ky, kx = np.meshgrid(np.fft.fftfreq(5), np.fft.fftfreq(8), (np.fft.rfftfreq if rfft else np.fft.fftfreq)(7), indexing="ij")
    got = np.broadcast_arrays(*fft_frequencies(shape, rfft))
    for a, b in zip(got, (kz, ky, kx)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(frequency_magnitude(shape, rfft), np.sqrt(kz**2 + ky**2 + kx**2))
    # the layout is the one of the transforms themselves: a plane wave of 2 cycles along x peaks at kx = 2 / 7
    wave = np.cos(2 * np.pi * 2 * np.arange(7) / 7)[None, None, :] * np.ones(shape)
    spectrum = np.abs(np.fft.rfftn(wave) if rfft else np.fft.fftn(wave))
    assert kx.flat[np.argmax(spectrum)] == pytest.approx(2 / 7)


def test_paste_mask_is_the_inverse_of_cut_boxes_at_faces():
    rng = np.random.default_rng(3)
    shape = (13, 22, 17)
    labels = np.zeros(shape, np.int16)
    centres = np.array([[1.2, 20.6, 8.0], [6.0, 11.0, 16.4]])  # both boxes cross a face
    masks = (rng.random((2, 7, 7, 7)) > 0.5).astype(np.float32)
    for k, (centre, mask) in enumerate(zip(centres, masks)):
        paste_mask(labels, centre, mask, k + 1)
    for k, (centre, mask) in enumerate(zip(centres, masks)):
        cut = cut_boxes((labels == k + 1).astype(np.float32), centre[None], 7, fill=-1)[0]
        inside = cut >= 0  # the part of the box within the volume
        assert inside.sum() < mask.size  # really clipped
        np.testing.assert_array_equal(cut[inside], mask[inside])

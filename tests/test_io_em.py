"""Tests for cryomine.io.em: TOM/PyTom .em volumes, motive lists and the ZXZ -> RELION angle conversion."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from cryomine.errors import InputError
from cryomine.geometry import euler_zyz_to_matrix
from cryomine.io.em import (
    EM_HEADER_BYTES,
    MOTL_COLUMNS,
    em_voxel_size_a,
    motl_to_particles,
    read_em,
    read_em_array,
    read_motl,
    relion_zyz_to_zxz,
    write_em,
    zxz_to_relion_zyz,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CRYOCAT = SHARED / "realdata" / "cryocat_ribosome"

_CODES = {
    np.dtype("int8"): 1,
    np.dtype("int16"): 2,
    np.dtype("int32"): 4,
    np.dtype("float32"): 5,
    np.dtype("complex64"): 8,
    np.dtype("float64"): 9,
}


def write_em_bytes(
    path: Path, data_zyx: np.ndarray, *, big_endian: bool = False, type_code: int | None = None, cut: int = 0
) -> Path:
    """Write an .em file by hand: 512-byte header, then x-fastest data (``data_zyx`` is (z, y, x))."""
    order = ">" if big_endian else "<"
    nz, ny, nx = data_zyx.shape
    header = bytearray(EM_HEADER_BYTES)
    header[0] = 3 if big_endian else 6
    header[3] = _CODES[data_zyx.dtype] if type_code is None else type_code
    header[4:16] = struct.pack(order + "3i", nx, ny, nz)
    payload = np.ascontiguousarray(data_zyx).astype(data_zyx.dtype.newbyteorder(order)).tobytes()
    blob = bytes(header) + payload
    path.write_bytes(blob[: len(blob) - cut] if cut else blob)
    return path


def coded_volume(shape=(2, 3, 5), dtype=np.float32) -> np.ndarray:
    """Voxel (z, y, x) holds 100 z + 10 y + x, so any axis mix-up changes values."""
    z, y, x = np.indices(shape)
    return (100 * z + 10 * y + x).astype(dtype)


# ------------------------------------------------------------------------------------------------ volumes


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("big_endian", [False, True])
def test_hand_written_em_round_trip_keeps_axis_order(tmp_path, dtype, big_endian):
    data = (coded_volume() % 128).astype(dtype)  # fits int8 too
    path = write_em_bytes(tmp_path / "tiny.em", data, big_endian=big_endian)
    vol = read_em(path)
    assert vol.data.shape == (2, 3, 5)
    assert vol.data.dtype == np.float32
    np.testing.assert_array_equal(vol.data, data.astype(np.float32))
    assert vol.voxel_size_a == 1.0
    assert read_em(path, voxel_size_a=2.176).voxel_size_a == pytest.approx(2.176)
    raw = read_em_array(path)
    assert raw.dtype == np.dtype(dtype) and raw.dtype.isnative
    np.testing.assert_array_equal(raw, data)


@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.float64])
def test_write_em_round_trip_and_header_voxel_size(tmp_path, dtype):
    data = coded_volume((3, 4, 7), dtype)
    path = write_em(tmp_path / "v.em", data, voxel_size_a=8.704)
    assert path.stat().st_size == EM_HEADER_BYTES + data.nbytes
    np.testing.assert_array_equal(read_em_array(path), data)
    assert read_em_array(path).dtype == np.dtype(dtype)
    assert em_voxel_size_a(path) == pytest.approx(8.704)  # header parameter 7, 1/1000 A units
    assert read_em(path).voxel_size_a == pytest.approx(8.704)  # the header's when not given
    assert em_voxel_size_a(write_em(tmp_path / "n.em", data)) is None
    same = write_em_bytes(tmp_path / "hand.em", data)  # the hand-written layout, byte for byte
    assert (tmp_path / "n.em").read_bytes() == same.read_bytes()
    with pytest.raises(InputError, match="3-D"):
        write_em(tmp_path / "bad.em", np.zeros((2, 3)))


def test_truncated_em_names_file(tmp_path):
    path = write_em_bytes(tmp_path / "cut_volume.em", coded_volume(), cut=7)
    with pytest.raises(InputError, match="cut_volume.em.*truncated"):
        read_em(path)
    short = tmp_path / "header_only.em"
    short.write_bytes(b"\x06\x00\x00\x05" + b"\x00" * 100)
    with pytest.raises(InputError, match="header_only.em.*truncated"):
        read_em(short)


def test_bad_em_inputs(tmp_path):
    with pytest.raises(InputError, match="missing.em.*not found"):
        read_em(tmp_path / "missing.em")
    with pytest.raises(InputError, match="type7.em.*data type code 7"):
        read_em(write_em_bytes(tmp_path / "type7.em", coded_volume(), type_code=7))
    nan = coded_volume()
    nan[1, 2, 3] = np.nan
    nan[0, 0, 0] = np.inf
    with pytest.raises(InputError, match="nan.em.*1 NaN and 1 infinite"):
        read_em(write_em_bytes(tmp_path / "nan.em", nan))
    with pytest.raises(InputError, match="complex.em.*complex"):
        read_em(write_em_bytes(tmp_path / "complex.em", coded_volume().astype(np.complex64)))
    with pytest.raises(InputError, match="voxel size"):
        read_em(write_em_bytes(tmp_path / "ok.em", coded_volume()), voxel_size_a=0)
    huge = bytearray(write_em_bytes(tmp_path / "huge.em", coded_volume()).read_bytes())
    huge[4:16] = struct.pack("<3i", 2**30, 2**30, 2**30)  # corrupt header claiming ~4 EB of data
    (tmp_path / "huge.em").write_bytes(bytes(huge))
    with pytest.raises(InputError, match="huge.em.*truncated"):
        read_em(tmp_path / "huge.em")
    garbage = tmp_path / "garbage.em"
    garbage.write_bytes(bytes(range(256)) * 3)
    with pytest.raises(InputError, match="garbage.em"):
        read_em(garbage)


@pytest.mark.parametrize(
    "name",
    [
        "bin4_voxel2.176_ribosome.em",
        "tm_bin4_voxel2.176_ribosome.em",
        "tile_filt_48_t126_b4_f24.em",
        "subtomo_ribosome_mmotl_ribosome_b4_trim_shift_t126_t126_b4_s48.em",
    ],
)
def test_real_em_volumes_have_header_shape(name):
    path = CRYOCAT / name
    if not path.exists():
        pytest.skip(f"{path} not available")
    header = path.read_bytes()[:16]
    nx, ny, nz = struct.unpack("<3i", header[4:16])
    vol = read_em(path, voxel_size_a=21.76)
    assert vol.data.shape == (nz, ny, nx) == (48, 48, 48)
    assert np.isfinite(vol.data).all() and vol.data.std() > 0
    assert vol.voxel_size_a == pytest.approx(21.76)


def test_real_template_and_tm_template_are_contrast_inverted():
    """The template-matching copy of the ribosome template is the inverted-contrast map: strong anticorrelation."""
    a, b = CRYOCAT / "bin4_voxel2.176_ribosome.em", CRYOCAT / "tm_bin4_voxel2.176_ribosome.em"
    if not (a.exists() and b.exists()):
        pytest.skip("cryoCAT data not available")
    x, y = read_em(a).data.ravel(), read_em(b).data.ravel()
    assert np.corrcoef(x, y)[0, 1] < -0.5


# ----------------------------------------------------------------------------------------------- motls


@pytest.mark.parametrize(
    "name, count",
    [("motl_ribosome_b4_trim_shift_t126.em", 50), ("nn_ribosome_motl.em", 1023), ("nn_tric_motl.em", 139)],
)
def test_real_motls_load_with_their_particle_counts(name, count):
    path = CRYOCAT / name
    if not path.exists():
        pytest.skip(f"{path} not available")
    motl = read_motl(path)
    assert list(motl.columns) == list(MOTL_COLUMNS)
    assert len(motl) == count
    assert (motl["theta"].between(0, 180)).all()  # TOM theta is the x-rotation in [0, 180]
    assert (motl[["x", "y", "z"]].max() - motl[["x", "y", "z"]].min() > 30).all()  # positions spread in voxels
    assert motl[["shift_x", "shift_y", "shift_z"]].abs().max().max() < 5  # sub-voxel refinement shifts
    particles = motl_to_particles(motl)
    assert len(particles) == count
    coords = particles[["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]].to_numpy()
    tom = motl[["x", "y", "z"]].to_numpy() + motl[["shift_x", "shift_y", "shift_z"]].to_numpy()
    np.testing.assert_array_equal(coords, tom - 1)  # 1-based TOM centre -> 0-based voxels
    assert not any(c.startswith("rlnOrigin") for c in particles.columns)  # the shifts are in the coordinates
    np.testing.assert_array_equal(motl_to_particles(motl, binning=4)[["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]],
                                  (tom - 1) / 4)  # fmt: skip
    assert set(particles["rlnTomoName"]) == {str(int(t)) for t in motl["tomo_id"]}
    mats = euler_zyz_to_matrix(particles[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy())
    ref = Rotation.from_euler("zxz", motl[["phi", "theta", "psi"]].to_numpy(), degrees=True).as_matrix()
    np.testing.assert_allclose(mats, ref, atol=1e-9)


def test_motl_round_trip_of_hand_written_list(tmp_path):
    rng = np.random.default_rng(7)
    motl = rng.uniform(-5, 5, size=(9, 20))
    motl[:, 16:19] = rng.uniform([-180, -180, 0], [180, 180, 180], size=(9, 3))
    path = write_em_bytes(tmp_path / "motl.em", motl.reshape(1, 9, 20).astype(np.float32))
    df = read_motl(path)
    np.testing.assert_allclose(df.to_numpy(), motl.astype(np.float32))
    assert df.loc[3, "phi"] == pytest.approx(motl[3, 16], abs=1e-4)
    assert df.loc[3, "theta"] == pytest.approx(motl[3, 18], abs=1e-4)


def test_bad_motls(tmp_path):
    with pytest.raises(InputError, match="vol.em.*not a TOM motive list"):
        read_motl(write_em_bytes(tmp_path / "vol.em", coded_volume((2, 3, 20))))
    bad = np.zeros((1, 4, 20), dtype=np.float32)
    bad[0, 2, 8] = np.nan
    with pytest.raises(InputError, match="nanmotl.em.*NaN.*particle 2"):
        read_motl(write_em_bytes(tmp_path / "nanmotl.em", bad))
    with pytest.raises(InputError, match="cutmotl.em.*truncated"):
        read_motl(write_em_bytes(tmp_path / "cutmotl.em", np.zeros((1, 4, 20), np.float32), cut=4))
    with pytest.raises(InputError, match="lacks columns"):
        ok = read_motl(write_em_bytes(tmp_path / "ok.em", np.zeros((1, 2, 20), np.float32)))
        motl_to_particles(ok.drop(columns="phi"))


# ------------------------------------------------------------------------------------------------ angles


def _rz(a):
    c, s = np.cos(np.deg2rad(a)), np.sin(np.deg2rad(a))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def _rx(a):
    c, s = np.cos(np.deg2rad(a)), np.sin(np.deg2rad(a))
    return np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])


def test_zxz_conversion_gives_the_same_rotation_matrix():
    """Invariant: a TOM triple and its RELION triple describe one rotation, Rz(psi) Rx(theta) Rz(phi)."""
    rng = np.random.default_rng(0)
    tom = np.column_stack([rng.uniform(-180, 180, 200), rng.uniform(-180, 180, 200), rng.uniform(0, 180, 200)])
    tom[:3] = [[0, 0, 0], [30, 0, 0], [10, 20, 180]]  # include gimbal-lock cases
    relion = zxz_to_relion_zyz(tom)
    assert (relion[:, 1] >= 0).all() and (relion[:, 1] <= 180).all()
    for (phi, psi, theta), zyz in zip(tom, relion, strict=True):
        by_hand = _rz(psi) @ _rx(theta) @ _rz(phi)  # TOM tom_rotate matrix, written out
        np.testing.assert_allclose(euler_zyz_to_matrix(zyz), by_hand, atol=1e-9)
    back = relion_zyz_to_zxz(relion)
    np.testing.assert_allclose(euler_zyz_to_matrix(zxz_to_relion_zyz(back)), euler_zyz_to_matrix(relion), atol=1e-9)


def test_zxz_conversion_agrees_with_cryocat_formula():
    """cryoCAT's EM -> RELION conversion: ZXZ(phi, theta, psi).as_euler(ZYZ) = a; rot, tilt, psi = -a0, a1, -a2."""
    rng = np.random.default_rng(1)
    tom = np.column_stack([rng.uniform(-180, 180, 50), rng.uniform(-180, 180, 50), rng.uniform(1, 179, 50)])
    a = Rotation.from_euler("ZXZ", tom[:, [0, 2, 1]], degrees=True).as_euler("ZYZ", degrees=True)
    cryocat = np.column_stack([-a[:, 0], a[:, 1], -a[:, 2]])
    np.testing.assert_allclose(euler_zyz_to_matrix(zxz_to_relion_zyz(tom)), euler_zyz_to_matrix(cryocat), atol=1e-9)
    # and cryoCAT's RELION -> EM direction: ZYZ(rot, tilt, psi).as_euler(zxz) = z; phi, theta, psi = -z2, -z1, -z0
    z = Rotation.from_euler("ZYZ", cryocat, degrees=True).as_euler("zxz", degrees=True)
    back = np.column_stack([-z[:, 2], -z[:, 0], -z[:, 1]])  # (phi, psi, theta)
    np.testing.assert_allclose(euler_zyz_to_matrix(zxz_to_relion_zyz(back)), euler_zyz_to_matrix(cryocat), atol=1e-9)


def test_simple_tom_rotation_about_z():
    """phi = 90 alone is a +90 degree turn about z: RELION rot = -90 (RELION's rot = 90 maps x to -y)."""
    zyz = zxz_to_relion_zyz([90.0, 0.0, 0.0])
    np.testing.assert_allclose(euler_zyz_to_matrix(zyz) @ [1, 0, 0], [0, 1, 0], atol=1e-12)


def test_angle_conversion_rejects_bad_shapes():
    with pytest.raises(InputError, match="shape"):
        zxz_to_relion_zyz([1.0, 2.0])
    with pytest.raises(InputError, match="non-finite"):
        zxz_to_relion_zyz([[1.0, np.nan, 3.0]])

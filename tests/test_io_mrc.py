"""Tests for cryomine.io.mrc: round trips, real maps and stacks, and bad input without stray files."""

from __future__ import annotations

import mmap
import shutil
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from cryomine.errors import InputError
from cryomine.io.mrc import Volume, read_mrc, set_header_stats, write_mrc, write_volume
from cryomine.resources import release_pages

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MAP_1BXN = SHARED / "structures" / "maps_10A" / "1bxn.mrc"
STACK = (
    SHARED
    / "realdata"
    / "relion5_warptools"
    / "warptools_test_4-tomos_10-ptcls_box-32_angpix-12"
    / "Unt_050"
    / "Unt_050_12.00A_000001.mrcs"
)


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not available")
    return path


def files_in(folder: Path) -> set[str]:
    """All names in ``folder``, hidden temporary files included."""
    return {p.name for p in folder.iterdir()}


def test_round_trip_non_cubic_keeps_data_voxel_size_and_origin(tmp_path):
    rng = np.random.default_rng(11)
    data = rng.normal(size=(5, 7, 9)).astype(np.float32)
    out = write_mrc(tmp_path / "vol.mrc", data, voxel_size_a=3.25, origin_zyx_a=(-12.5, 4.0, 7.75))
    vol = read_mrc(out)
    assert vol.data.shape == (5, 7, 9)
    np.testing.assert_array_equal(vol.data, data)
    assert vol.voxel_size_a == pytest.approx(3.25)
    assert vol.origin_zyx_a == pytest.approx((-12.5, 4.0, 7.75))
    with mrcfile.open(out) as mrc:  # (z, y, x) -> MRC nz, ny, nx: x is the fastest axis
        assert (int(mrc.header.nx), int(mrc.header.ny), int(mrc.header.nz)) == (9, 7, 5)
    write_volume(tmp_path / "again.mrc", vol)
    np.testing.assert_array_equal(read_mrc(tmp_path / "again.mrc").data, data)
    assert files_in(tmp_path) == {"vol.mrc", "again.mrc"}


def test_integer_input_is_stored_as_float32(tmp_path):
    data = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    vol = read_mrc(write_mrc(tmp_path / "ints.mrc", data))
    assert vol.data.dtype == np.float32
    np.testing.assert_array_equal(vol.data, data)


def test_real_map_loads_with_10_angstrom_voxels():
    vol = read_mrc(need(MAP_1BXN))
    assert vol.voxel_size_a == pytest.approx(10.0)
    assert vol.data.ndim == 3 and min(vol.data.shape) > 10
    assert vol.data.max() > vol.data.mean()  # a density, not an empty box


def test_real_relion5_tilt_stack_loads_as_stack():
    path = need(STACK)
    with mrcfile.open(path) as mrc:
        expected = (int(mrc.header.nz), int(mrc.header.ny), int(mrc.header.nx))
    vol = read_mrc(path, allow_stack=True)
    assert vol.data.shape == expected == (37, 32, 32)
    assert vol.voxel_size_a == pytest.approx(12.0)
    assert np.isfinite(vol.data).all() and vol.data.std() > 0


def test_2d_image_needs_allow_stack(tmp_path):
    path = tmp_path / "image.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(np.ones((6, 8), dtype=np.float32))
    with pytest.raises(InputError, match="image.mrc.*3-D"):
        read_mrc(path)
    assert read_mrc(path, allow_stack=True).data.shape == (1, 6, 8)


def test_missing_truncated_and_garbage_files_name_the_file(tmp_path):
    with pytest.raises(InputError, match="nothing.mrc.*not found"):
        read_mrc(tmp_path / "nothing.mrc")
    cut = tmp_path / "cut.mrc"
    shutil.copy(need(MAP_1BXN), cut)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size - 1000])
    with pytest.raises(InputError, match="cut.mrc"):
        read_mrc(cut)
    header_only = tmp_path / "stub.mrc"
    header_only.write_bytes(MAP_1BXN.read_bytes()[:300])
    with pytest.raises(InputError, match="stub.mrc"):
        read_mrc(header_only)
    garbage = tmp_path / "garbage.mrc"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(InputError, match="garbage.mrc"):
        read_mrc(garbage)
    with pytest.raises(InputError, match="not a file"):
        read_mrc(tmp_path)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # mrcfile warns while writing the bad fixture
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_voxels_rejected_on_read_and_write(tmp_path, bad):
    data = np.zeros((4, 5, 6), dtype=np.float32)
    data[1, 2, 3] = bad
    path = tmp_path / "nonfinite.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(data)
    with pytest.raises(InputError, match="nonfinite.mrc.*(NaN|infinite)"):
        read_mrc(path)
    with pytest.raises(InputError, match="out.mrc.*(NaN|infinite)"):
        write_mrc(tmp_path / "out.mrc", data)
    assert files_in(tmp_path) == {"nonfinite.mrc"}


@pytest.mark.parametrize(
    "data, voxel_size, message",
    [
        (np.zeros((6, 7), np.float32), 1.0, "3-D"),
        (np.zeros((2, 3, 4, 5), np.float32), 1.0, "3-D"),
        (np.zeros((0, 3, 4), np.float32), 1.0, "empty"),
        (np.zeros((2, 3, 4), np.complex64), 1.0, "non-real"),
        (np.zeros((2, 3, 4), np.float32), 0.0, "voxel size"),
        (np.zeros((2, 3, 4), np.float32), -1.0, "voxel size"),
        (np.zeros((2, 3, 4), np.float32), float("nan"), "voxel size"),
    ],
)
def test_bad_writes_raise_and_leave_no_file(tmp_path, data, voxel_size, message):
    target = tmp_path / "sub" / "bad_out.mrc"
    with pytest.raises(InputError, match=f"bad_out.mrc.*{message}"):
        write_mrc(target, data, voxel_size_a=voxel_size)
    assert not target.exists()
    assert not (tmp_path / "sub").exists() or files_in(tmp_path / "sub") == set()


def test_failed_overwrite_keeps_the_old_file(tmp_path):
    target = tmp_path / "keep.mrc"
    write_mrc(target, np.ones((2, 3, 4), np.float32), voxel_size_a=2.0)
    with pytest.raises(InputError):
        write_mrc(target, np.full((2, 3, 4), np.nan, np.float32))
    np.testing.assert_array_equal(read_mrc(target).data, np.ones((2, 3, 4)))
    assert files_in(tmp_path) == {"keep.mrc"}


def test_volume_dataclass_defaults():
    vol = Volume(np.zeros((1, 2, 3), np.float32))
    assert vol.voxel_size_a == 1.0 and vol.origin_zyx_a == (0.0, 0.0, 0.0)


def test_header_stats_equal_mrcfiles_own(tmp_path):
    """write_mrc computes the header statistics in slabs; they equal mrcfile's update_header_stats."""
    data = np.random.default_rng(5).normal(3.0, 2.0, (37, 21, 23)).astype(np.float32)
    write_mrc(tmp_path / "a.mrc", data, 4.0)
    with mrcfile.new(tmp_path / "ref.mrc") as ref:
        ref.set_data(data)
        ref.update_header_stats()
        expected = [float(ref.header[k]) for k in ("dmin", "dmax", "dmean", "rms")]
    with mrcfile.open(tmp_path / "a.mrc") as mrc:
        got = [float(mrc.header[k]) for k in ("dmin", "dmax", "dmean", "rms")]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    with mrcfile.new(tmp_path / "slabs.mrc") as mrc:  # many slabs of 1-2 z planes
        mrc.set_data(data)
        set_header_stats(mrc, mrc.data, chunk_voxels=700)
        np.testing.assert_allclose([float(mrc.header[k]) for k in ("dmin", "dmax", "dmean", "rms")], expected, rtol=1e-6)


def test_integer_label_maps_round_trip_in_mode_0_and_refuse_what_does_not_fit(tmp_path):
    labels = np.random.default_rng(0).integers(-3, 120, size=(5, 7, 6)).astype(np.int8)
    write_mrc(tmp_path / "labels.mrc", labels, 10.0, mrc_mode=0)
    with mrcfile.open(tmp_path / "labels.mrc") as mrc:
        assert mrc.header.mode == 0
        np.testing.assert_array_equal(mrc.data, labels)
    with pytest.raises(InputError, match=r"integers in \[-128, 127\]"):
        write_mrc(tmp_path / "bad.mrc", labels.astype(np.float32) * 2.0, 10.0, mrc_mode=0)
    with pytest.raises(InputError, match="integers"):
        write_mrc(tmp_path / "bad.mrc", labels + 0.5, 10.0, mrc_mode=1)
    assert not (tmp_path / "bad.mrc").exists()


def test_released_pages_of_a_written_memory_map_keep_their_data(tmp_path):
    """release_pages flushes a written map before dropping its pages: what is read back (from the file) is what
    was written; in-memory arrays are left alone."""
    expected = np.random.default_rng(3).normal(size=(9, 31, 17)).astype(np.float32)
    with mrcfile.new_mmap(tmp_path / "m.mrc", expected.shape, mrc_mode=2) as mrc:
        assert isinstance(getattr(mrc.data, "_mmap", None), mmap.mmap)  # what release_pages acts on
        for z in range(expected.shape[0]):
            mrc.data[z] = expected[z]
            release_pages(mrc.data)  # after every slab, as the slab writers do
        np.testing.assert_array_equal(mrc.data, expected)
    np.testing.assert_array_equal(mrcfile.read(tmp_path / "m.mrc"), expected)
    plain = expected.copy()
    release_pages(plain)
    np.testing.assert_array_equal(plain, expected)

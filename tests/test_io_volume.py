"""Tests for cryomine.io.volume.read_volume (MRC and .em by extension) and .em templates and masks in template
matching (voxel size from the header or the user, never a silent 1 Å)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cryomine.cli import main
from cryomine.errors import InputError
from cryomine.io import read_particles, read_volume, write_em, write_mrc
from cryomine.io.star import coordinates_xyz_voxels, particles_pixel_size_a
from cryomine.simulate.templates import prepare_template

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CRYOCAT = SHARED / "realdata" / "cryocat_ribosome"


def coded(shape=(5, 6, 7)) -> np.ndarray:
    z, y, x = np.indices(shape)
    return (100 * z + 10 * y + x).astype(np.float32)


def test_read_volume_mrc_and_em_give_the_same_volume(tmp_path):
    data = coded()
    for suffix in (".mrc", ".map", ".rec", ".MRC"):
        vol = read_volume(write_mrc(tmp_path / f"v{suffix}", data, 3.5))
        np.testing.assert_array_equal(vol.data, data)
        assert vol.voxel_size_a == pytest.approx(3.5) and vol.data.dtype == np.float32
    assert read_volume(tmp_path / "v.mrc", 7.0).voxel_size_a == 7.0  # the user's value overrides the header
    stored = read_volume(write_em(tmp_path / "stored.em", data, voxel_size_a=3.5))
    np.testing.assert_array_equal(stored.data, data)
    assert stored.voxel_size_a == pytest.approx(3.5)
    bare = write_em(tmp_path / "bare.em", data.astype(np.int16))  # no voxel size in the header
    vol = read_volume(bare, 2.176)
    np.testing.assert_array_equal(vol.data, data)
    assert vol.data.dtype == np.float32 and vol.voxel_size_a == 2.176
    np.testing.assert_array_equal(read_volume(tmp_path / "v.mrc").data, read_volume(bare, 1.0).data)


def test_read_volume_errors_name_file_or_option(tmp_path):
    bare = write_em(tmp_path / "bare.em", coded())
    with pytest.raises(InputError, match=r"bare.em: the .em header holds no voxel size.*--template-voxel-size"):
        read_volume(bare, option="--template-voxel-size")
    with pytest.raises(InputError, match="--mask-voxel-size: voxel size must be > 0"):
        read_volume(bare, 0.0, option="--mask-voxel-size")
    with pytest.raises(InputError, match="v.tif: unknown volume file type '.tif'"):
        read_volume(tmp_path / "v.tif", 1.0)
    cut = tmp_path / "cut.em"
    cut.write_bytes(bare.read_bytes()[:-3])
    with pytest.raises(InputError, match="cut.em: truncated"):
        read_volume(cut, 1.0)
    with pytest.raises(InputError, match="gone.mrc: file not found"):
        read_volume(tmp_path / "gone.mrc")


def test_real_em_template_prepares_like_the_same_map_as_mrc(tmp_path):
    """The cryoCAT ribosome template (.em, 8.704 Å, no voxel size stored) = the same array as MRC at 8.704 Å."""
    src = CRYOCAT / "bin4_voxel2.176_ribosome.em"
    if not src.exists():
        pytest.skip(f"{src} not available")
    with pytest.raises(InputError, match="bin4_voxel2.176_ribosome.em.*voxel size.*map_voxel_size_a"):
        prepare_template(str(src), 17.408)
    mrc = write_mrc(tmp_path / "ribo.mrc", read_volume(src, 8.704).data, 8.704)
    from_em = prepare_template(str(src), 17.408, map_voxel_size_a=8.704)
    from_mrc = prepare_template(str(mrc), 17.408)
    assert from_em.density.shape == from_mrc.density.shape and from_em.voxel_size_a == pytest.approx(17.408)
    np.testing.assert_allclose(from_em.density, from_mrc.density, rtol=1e-5, atol=1e-6)
    # the user's voxel size is used, not a default: at half the voxel size the molecule spans half the voxels
    small = prepare_template(str(src), 17.408, map_voxel_size_a=4.352)
    assert small.radius_vox < 0.6 * from_em.radius_vox


def test_template_pick_with_em_template_and_mask_finds_planted_particle(tmp_path, capsys):
    """An .em template and .em mask (in the template's own box, kept by default) in ``cryomine pick``: a planted
    copy is found at its 0-based voxel."""
    rng = np.random.default_rng(4)
    density = np.zeros((19, 19, 19), np.float32)
    density[5:14, 7:12, 6:13] = 1.0
    density[5:9, 12:15, 6:10] = 1.0  # asymmetric
    tmpl_em = write_em(tmp_path / "blob.em", density)  # no voxel size stored
    m = density.shape[0]
    zz, yy, xx = np.indices((m, m, m)) - m // 2
    mask_em = write_em(tmp_path / "mask.em", (zz**2 + yy**2 + xx**2 <= (m // 2) ** 2).astype(np.float32))
    tomo = 0.05 * rng.standard_normal((30, 34, 32)).astype(np.float32)
    centre = np.array([14, 18, 15])  # (z, y, x), 0-based
    lo = centre - m // 2
    tomo[lo[0] : lo[0] + m, lo[1] : lo[1] + m, lo[2] : lo[2] + m] += density
    mrc = write_mrc(tmp_path / "tomo.mrc", tomo, 12.0)
    out = tmp_path / "picks.star"
    base = ["pick", str(mrc), "--method", "template", "--template", str(tmpl_em), "--angular-step", "90", "--no-ctf",
            "--tilt-min", "-60", "--tilt-max", "60",
            "--top-n", "1", "--mask", str(mask_em), "--out", str(out)]  # fmt: skip
    capsys.readouterr()
    assert main(base) == 2  # the .em template has no voxel size: refused, naming the option
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "blob.em" in err and "--template-voxel-size" in err and "\n" not in err
    assert not out.exists()
    assert main([*base, "--template-voxel-size", "12"]) == 0
    table = read_particles(out)
    np.testing.assert_array_equal(coordinates_xyz_voxels(table), [centre[::-1]])
    assert particles_pixel_size_a(table) == 12.0

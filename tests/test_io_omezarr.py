"""OME-Zarr tomograms (issue 18, item 1): pyramid round trip, voxel size from the metadata at every level,
units and extra axes, malformed metadata refused, and picking an OME-Zarr tomogram equals picking its MRC."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

from cryomine.cli import main
from cryomine.errors import InputError
from cryomine.io import read_mrc
from cryomine.io.omezarr import omezarr_levels, read_omezarr, write_omezarr
from cryomine.io.star import read_particles
from cryomine.io.volume import header_voxel_size, read_volume, volume_kind


def _vol(shape=(13, 22, 18), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def test_pyramid_round_trip_with_voxel_sizes(tmp_path):
    data = _vol()
    write_omezarr(tmp_path / "t.zarr", data, 7.5, levels=3)
    assert omezarr_levels(tmp_path / "t.zarr") == [("0", 7.5), ("1", 15.0), ("2", 30.0)]
    full = read_omezarr(tmp_path / "t.zarr")
    np.testing.assert_array_equal(full.data, data)
    assert full.voxel_size_a == 7.5
    one = read_volume(tmp_path / "t.zarr" / "1")  # a level by its path
    expected = data[:12, :22, :18].reshape(6, 2, 11, 2, 9, 2).mean(axis=(1, 3, 5))
    np.testing.assert_allclose(one.data, expected, rtol=1e-6)
    assert one.voxel_size_a == 15.0 and header_voxel_size(tmp_path / "t.zarr" / "2") == 30.0
    assert volume_kind(tmp_path / "t.zarr") == "omezarr" and volume_kind(tmp_path) is None
    with pytest.raises(InputError, match="exists"):
        write_omezarr(tmp_path / "t.zarr", data, 7.5)


def _ngff(path, data, axes, scale):
    root = zarr.open_group(str(path), mode="w")
    root.create_dataset("s0", data=data)
    root.attrs["multiscales"] = [{"version": "0.4", "axes": axes,
                                  "datasets": [{"path": "s0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}]}]


def test_units_and_singleton_axes_of_other_writers(tmp_path):
    data = _vol((6, 8, 10))[None, None]  # (t, c, z, y, x), as the NGFF axis order allows
    axes = [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"}] + [
        {"name": a, "type": "space", "unit": "nanometer"} for a in "zyx"]
    _ngff(tmp_path / "nm.zarr", data, axes, [1, 1, 1.2, 1.2, 1.2])
    v = read_omezarr(tmp_path / "nm.zarr")
    assert v.data.shape == (6, 8, 10) and v.voxel_size_a == pytest.approx(12.0)
    assert read_omezarr(tmp_path / "nm.zarr", 9.0).voxel_size_a == 9.0  # the flag overrides the metadata


@pytest.mark.parametrize("axes_unit, scale, needle", [
    ("pixel", [1, 1, 1], "not a length unit"),
    ("angstrom", [10, 10, 20], "not isotropic"),
    ("angstrom", [10, 10], "no scale for its 3 axes"),
])
def test_malformed_metadata_is_refused(tmp_path, axes_unit, scale, needle):
    _ngff(tmp_path / "bad.zarr", _vol((4, 4, 4)), [{"name": a, "type": "space", "unit": axes_unit} for a in "zyx"], scale)
    with pytest.raises(InputError, match=needle):
        read_omezarr(tmp_path / "bad.zarr")
    (tmp_path / "plain").mkdir()
    with pytest.raises(InputError, match="not an OME-Zarr image"):
        read_omezarr(tmp_path / "plain")
    write_omezarr(tmp_path / "ok.zarr", _vol((8, 8, 8)), 10.0, levels=1)
    (tmp_path / "ok.zarr" / "5").mkdir()  # a folder inside the image that is not one of its levels
    with pytest.raises(InputError, match="no pyramid level '5'"):
        read_omezarr(tmp_path / "ok.zarr" / "5")


def test_a_nan_level_names_the_image(tmp_path):
    data = _vol((8, 8, 8))
    data[1, 2, 3] = np.nan
    write_omezarr(tmp_path / "n.zarr", np.nan_to_num(data), 10.0, levels=1)
    zarr.open_array(str(tmp_path / "n.zarr" / "0"), mode="r+")[1, 2, 3] = np.nan
    with pytest.raises(InputError, match=r"n\.zarr: .*NaN"):
        read_omezarr(tmp_path / "n.zarr")
    assert json.loads((tmp_path / "n.zarr" / ".zattrs").read_text())["multiscales"][0]["version"] == "0.4"


def test_picking_an_omezarr_tomogram_equals_picking_its_mrc(tmp_path):
    assert main(["simulate", "tomogram", str(tmp_path / "t.mrc"), "--shape", "24,48,48", "--particles", "4",
                 "--structures", "1bxn", "--snr", "2", "--seed", "3"]) == 0  # fmt: skip
    vol = read_mrc(tmp_path / "t.mrc")
    write_omezarr(tmp_path / "t.zarr", vol.data, vol.voxel_size_a)
    for name in ("t.mrc", "t.zarr"):
        assert main(["pick", str(tmp_path / name), "--method", "dog", "--template", "1bxn",
                     "--out", str(tmp_path / f"{name}.star")]) == 0  # fmt: skip
    a, b = (read_particles(tmp_path / f"{n}.star").particles for n in ("t.mrc", "t.zarr"))
    cols = ["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ", "rlnAutopickFigureOfMerit"]
    assert len(a) > 0
    np.testing.assert_allclose(a[cols].to_numpy(float), b[cols].to_numpy(float))

"""Structure library: maps from atoms (gemmi), map operations, the shipped library and its index."""

from __future__ import annotations

import gzip
import json
import math
import shutil
import time
from pathlib import Path

import gemmi
import numpy as np
import pytest
from scipy import ndimage

from cryomine.errors import InputError
from cryomine.io.mrc import Volume, read_mrc, write_mrc
from cryomine.structures import (
    atoms_from_file,
    center_volume,
    density_from_model,
    library,
    list_structures,
    load_structure,
    pad_to_cube,
    resample_volume,
    resolve_structures,
    structure_ids,
)
from cryomine.structures.density import SIGMA_PER_RESOLUTION, atom_coords_and_masses, center_of_mass_xyz, max_radius_a
from cryomine.structures.maps import center_of_mass_zyx

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DATA = library.data_dir()


def _pdb(sid: str) -> Path:
    return DATA / "pdb" / f"{sid}.pdb.gz"


def _rg_map_a(data: np.ndarray, voxel_size_a: float) -> float:
    """Radius of gyration (Å) of a non-negative (d, h, w) map about its centre of mass."""
    com = center_of_mass_zyx(data)
    grid = np.indices(data.shape).reshape(3, -1).T
    w = data.ravel().astype(np.float64)
    return float(np.sqrt((((grid - com) ** 2).sum(axis=1) * w).sum() / w.sum())) * voxel_size_a


def _rg_atoms_a(st: gemmi.Structure) -> float:
    coords, masses = atom_coords_and_masses(st)
    d2 = ((coords - center_of_mass_xyz(st)) ** 2).sum(axis=1)
    return float(np.sqrt((d2 * masses).sum() / masses.sum()))


def _single_atom_pdb(path: Path, xyz: tuple[float, float, float]) -> Path:
    x, y, z = xyz
    path.write_text(
        "CRYST1  100.000  100.000  100.000  90.00  90.00  90.00 P 1           1\n"
        f"ATOM      1  C   ALA A   1    {x:8.3f}{y:8.3f}{z:8.3f}  1.00  0.00           C\nEND\n"
    )
    return path


# --- maps from atoms -----------------------------------------------------------------------------------------


def test_pdb_map_centred_with_atom_radius_of_gyration():
    st = atoms_from_file(_pdb("1s3x"))
    vol = density_from_model(st, voxel_size_a=10.0)
    d = vol.data
    n = d.shape[0]
    assert d.shape == (n, n, n) and n % 2 == 0 and d.dtype == np.float32 and vol.voxel_size_a == 10.0
    assert np.isfinite(d).all() and d.min() >= 0 and d.max() > 0
    assert n * 10.0 >= 2 * max_radius_a(st)  # the box holds the molecule
    assert np.abs(center_of_mass_zyx(d) - n // 2).max() < 0.5
    rg_atoms, rg_map = _rg_atoms_a(st), _rg_map_a(d, 10.0)
    assert abs(rg_map / rg_atoms - 1) < 0.10
    # tighter: the map's Rg^2 is the atoms' plus 3 x (resolution blur + 2x2x2 sub-sampling) variances
    sigma2 = (SIGMA_PER_RESOLUTION * 20.0) ** 2 + 10.0**2 / 16
    assert rg_map == pytest.approx(math.sqrt(rg_atoms**2 + 3 * sigma2), rel=0.02)
    # the map's edge faces are empty: no wrap-around of the periodic calculation
    faces = np.concatenate([d[0].ravel(), d[-1].ravel(), d[:, 0].ravel(), d[:, :, -1].ravel()])
    assert faces.max() < 1e-3 * d.max()


@pytest.mark.parametrize(
    ("xyz", "voxel_size_a", "resolution_a"),
    [((50.0, 50.0, 50.0), 10.0, None), ((13.7, -4.2, 88.1), 10.0, 30.0), ((1.3, 2.6, 3.9), 4.0, 8.0), ((0, 0, 0), 6.0, 60.0)],
)
def test_single_atom_is_conserved_centred_and_blurred_as_documented(tmp_path, xyz, voxel_size_a, resolution_a):
    st = atoms_from_file(_single_atom_pdb(tmp_path / "c.pdb", xyz))
    vol = density_from_model(st, voxel_size_a, resolution_a)
    d = vol.data
    n = d.shape[0]
    res = 2 * voxel_size_a if resolution_a is None else resolution_a
    sigma = SIGMA_PER_RESOLUTION * res
    # integral = sum of a carbon's electron scattering-factor Gaussian weights (~2.51), whatever the sampling
    assert d.sum() * voxel_size_a**3 == pytest.approx(2.5087, rel=2e-3)
    np.testing.assert_allclose(center_of_mass_zyx(d), n // 2, atol=0.01)
    grid = np.indices(d.shape).reshape(3, -1).T
    var = (((grid - n // 2) ** 2) * d.ravel()[:, None]).sum(axis=0) / d.sum() * voxel_size_a**2
    expected = sigma**2 + (voxel_size_a**2 / 16 if sigma < voxel_size_a else 0.0)
    # moments of a ~0.5-voxel Gaussian sampled on the grid deviate from the continuous ones by up to ~8%
    np.testing.assert_allclose(var, expected, rtol=0.1)


def test_box_size_pads_or_crops_about_the_centre():
    st = atoms_from_file(_pdb("3qm1"))
    auto = density_from_model(st, 10.0).data
    n = auto.shape[0]
    big = density_from_model(st, 10.0, box_size=n + 5).data
    assert big.shape == (n + 5,) * 3
    np.testing.assert_allclose(big, pad_to_cube(auto, n + 5), atol=1e-3 * auto.max())
    small = density_from_model(st, 10.0, box_size=n - 5).data
    lo = n // 2 - (n - 5) // 2
    np.testing.assert_array_equal(small, auto[lo : lo + n - 5, lo : lo + n - 5, lo : lo + n - 5])
    with pytest.raises(InputError, match="box_size"):
        density_from_model(st, 10.0, box_size=0)


def test_mmcif_gz_and_pdb_give_the_same_map(tmp_path):
    st = atoms_from_file(_pdb("3qm1"))
    doc = st.make_mmcif_document()
    cif = tmp_path / "3qm1.cif.gz"
    with gzip.open(cif, "wt") as fh:
        fh.write(doc.as_string())
    a = load_structure(_pdb("3qm1"), voxel_size_a=10.0).data
    b = load_structure(cif, voxel_size_a=10.0).data
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, atol=1e-4 * a.max())


def test_real_mmcif_apoferritin_is_a_hollow_centred_shell():
    cif = SHARED / "realdata" / "apoferritin" / "4v1w.cif"
    if not cif.is_file():
        pytest.skip("shared apoferritin mmCIF not available")
    vol = load_structure(cif, voxel_size_a=20.0)
    d = vol.data
    n = d.shape[0]
    assert vol.voxel_size_a == 20.0 and np.isfinite(d).all() and d.min() >= 0
    assert np.abs(center_of_mass_zyx(d) - n // 2).max() < 0.5
    assert 110 < 2 * max_radius_a(atoms_from_file(cif)) < 150  # apoferritin: ~120-130 Å across
    assert d[n // 2, n // 2, n // 2] < 0.05 * d.max()  # the 24-mer cage is hollow


@pytest.mark.parametrize(
    "text",
    ["data_x\nloop_\n_atom_site.id\n_atom_site.Cartn_x\n1 \"unterminated\n", "not a cif {}\n", "data_x\n_cell.length_a 10\n"],
)
def test_corrupt_or_empty_mmcif_is_input_error(tmp_path, text):
    p = tmp_path / "bad.cif"
    p.write_text(text)
    with pytest.raises(InputError, match="bad.cif"):
        load_structure(p)


def test_pdb_without_atoms_is_input_error_naming_the_file(tmp_path):
    p = tmp_path / "empty.pdb"
    p.write_text("HEADER    NOTHING HERE\nEND\n")
    with pytest.raises(InputError, match=r"empty\.pdb.*no atoms"):
        atoms_from_file(p)
    with pytest.raises(InputError, match=r"empty\.pdb"):
        load_structure(str(p))
    with pytest.raises(InputError, match="not found"):
        atoms_from_file(tmp_path / "missing.cif")


@pytest.mark.parametrize("voxel", [0, -1.0, float("nan")])
def test_bad_voxel_size_or_resolution_is_input_error(voxel):
    with pytest.raises(InputError, match="voxel"):
        load_structure("1s3x", voxel_size_a=voxel)
    with pytest.raises(InputError, match="voxel"):
        density_from_model(atoms_from_file(_pdb("1s3x")), voxel_size_a=voxel)
    with pytest.raises(InputError, match="Nyquist"):
        load_structure("1s3x", voxel_size_a=10.0, resolution_a=12.0)
    with pytest.raises(InputError, match="Nyquist"):
        load_structure("6pxm", voxel_size_a=10.0, resolution_a=12.0)


# --- map operations ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("sid", "other"), [("1bxn", 5.0), ("6pxm", 7.0), ("4v7r", 13.0)])
def test_resample_round_trip_keeps_map_and_centre(sid, other):
    vol = load_structure(sid)
    there = resample_volume(vol, other)
    assert there.voxel_size_a == other
    n, m = vol.data.shape[0], there.data.shape[0]
    assert abs(m * other - n * 10.0) <= other  # same physical extent to within one voxel
    assert there.data.sum() * other**3 == pytest.approx(vol.data.sum() * 1000.0, rel=0.01)  # integral kept
    np.testing.assert_allclose(center_of_mass_zyx(there.data), m // 2, atol=0.1)
    # the centre voxel keeps its physical position (origin moved accordingly)
    assert there.origin_zyx_a[0] + (m // 2) * other == pytest.approx((n // 2) * 10.0)
    back = resample_volume(there, 10.0)
    k = min(n, back.data.shape[0])
    a = pad_to_cube(vol.data, max(n, back.data.shape[0]))
    b = pad_to_cube(back.data, max(n, back.data.shape[0]))
    assert k >= n - 1
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.95
    np.testing.assert_allclose(center_of_mass_zyx(back.data), back.data.shape[0] // 2, atol=0.1)


def test_resample_odd_non_cubic_keeps_centre_voxel():
    data = np.zeros((21, 30, 17), np.float32)
    data[10, 15, 8] = 1.0
    data = ndimage.gaussian_filter(data, 2.0)
    for new in (2.0, 4.5):
        out = resample_volume(Volume(data, 3.0), new).data
        expect = np.rint(np.array(data.shape) * 3.0 / new).astype(int)
        assert out.shape == tuple(expect)
        np.testing.assert_allclose(center_of_mass_zyx(out), np.array(out.shape) // 2, atol=0.05)


def test_center_volume_moves_the_centre_of_mass_to_the_centre_voxel():
    rng = np.random.default_rng(3)
    data = np.zeros((23, 28, 19), np.float32)
    data[6, 19, 12] = 1.0
    data[8, 17, 11] = 0.5
    data = ndimage.gaussian_filter(data, 1.7) * rng.uniform(0.5, 1.5, data.shape).astype(np.float32)
    out = center_volume(data)
    assert out.shape == data.shape
    np.testing.assert_allclose(center_of_mass_zyx(out), np.array(data.shape) // 2, atol=0.05)
    assert out.sum() == pytest.approx(data.sum(), rel=0.02)
    with pytest.raises(InputError, match="no positive density"):
        center_volume(np.zeros((4, 4, 4), np.float32))


def test_pad_to_cube_keeps_the_centre_voxel():
    data = np.zeros((5, 8, 3), np.float32)
    data[2, 4, 1] = 7.0
    for size in (None, 9, 12):
        out = pad_to_cube(data, size)
        n = 8 if size is None else size
        assert out.shape == (n, n, n) and out.sum() == 7.0
        assert out[n // 2, n // 2, n // 2] == 7.0
    with pytest.raises(InputError, match="size"):
        pad_to_cube(data, 6)


# --- the shipped library -------------------------------------------------------------------------------------


def test_list_structures_ids_sources_and_diameters():
    library._index.cache_clear()
    t0 = time.perf_counter()
    infos = list_structures()
    assert time.perf_counter() - t0 < 2.0
    ids = [i.id for i in infos]
    shipped = {p.name[: -len(".pdb.gz")] for p in (DATA / "pdb").glob("*.pdb.gz")} | {
        p.stem for p in (DATA / "maps_10A").glob("*.mrc")
    }
    assert sorted(ids) == sorted(shipped) and len(set(ids)) == len(ids)
    # 13 atomic models + 26 maps, 12 of them with a model: 27 ids
    assert len(ids) == 27
    assert sum(i.source == "pdb" for i in infos) == 13
    assert {i.id for i in infos if i.source == "map"} == {p.stem for p in (DATA / "maps_10A").glob("*.mrc")} - {
        p.name[:-7] for p in (DATA / "pdb").glob("*.pdb.gz")
    }
    by_id = {i.id: i for i in infos}
    assert 160 <= by_id["3j9i"].diameter_a <= 200  # 20S proteasome: ~150 x 110 Å cylinder, diagonal ~180
    assert 250 <= by_id["4v4r"].diameter_a <= 350  # 70S ribosome
    assert 200 <= by_id["4v4r_30S"].diameter_a < by_id["4v4r"].diameter_a
    assert 60 <= by_id["1s3x"].diameter_a <= 90  # Hsp70 ATPase domain
    for info in infos:
        assert 50 < info.diameter_a < 400
        assert info.box_size * 10.0 >= info.diameter_a  # the box holds the molecule


def test_index_json_matches_a_fresh_computation():
    stored = {row["id"]: row for row in json.loads((DATA / "index.json").read_text())}
    assert sorted(stored, key=str.lower) == structure_ids()
    for sid in ("1s3x", "3qm1", "6pxm", "4v7r", "7n4y"):
        assert stored[sid] == library.compute_info(sid).to_dict()


def test_every_shipped_structure_loads_centred_at_10A():
    for info in list_structures():
        vol = load_structure(info.id)
        d = vol.data
        assert vol.voxel_size_a == 10.0 and d.ndim == 3 and np.isfinite(d).all(), info.id
        assert d.shape == (info.box_size,) * 3, info.id
        assert np.abs(center_of_mass_zyx(d) - np.array(d.shape) // 2).max() < 0.1, info.id


def test_load_is_case_insensitive_cached_and_returns_copies():
    a = load_structure("4V4R_30s")
    a.data[:] = -1.0  # callers may modify what they get
    b = load_structure("4v4r_30S")
    assert b.data.min() >= 0 and b.data.max() > 0
    assert library._load_cached.cache_info().hits >= 1


def test_load_from_shipped_pdb_path_and_user_mrc(tmp_path):
    p = tmp_path / "copy.pdb.gz"
    shutil.copy(_pdb("1s3x"), p)
    np.testing.assert_array_equal(load_structure(p).data, load_structure("1s3x").data)
    # a user's map at 5 Å, off-centre, with a background offset: loaded centred, background-free, at 10 Å
    data = np.zeros((40, 40, 40), np.float32)
    data[14, 25, 22] = 1.0
    data = ndimage.gaussian_filter(data, 3.0) * 100 + 0.5
    write_mrc(tmp_path / "user.mrc", data, voxel_size_a=5.0)
    vol = load_structure(tmp_path / "user.mrc", voxel_size_a=10.0)
    assert vol.voxel_size_a == 10.0 and vol.data.shape == (20, 20, 20)
    np.testing.assert_allclose(center_of_mass_zyx(vol.data), 10, atol=0.1)
    assert abs(float(np.median(vol.data))) < 1e-3
    assert read_mrc(tmp_path / "user.mrc").data.max() == pytest.approx(data.max())  # the file is untouched


def test_unknown_id_is_one_line_input_error_listing_known_ids(tmp_path):
    with pytest.raises(InputError) as err:
        load_structure("xyz")
    msg = str(err.value)
    assert "unknown structure id 'xyz'" in msg and "1bxn" in msg and "\n" not in msg
    with pytest.raises(InputError, match="not found"):
        load_structure(str(tmp_path / "nope.pdb"))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="unsupported"):
        load_structure(tmp_path / "notes.txt")


def test_resolve_structures_specs(tmp_path):
    assert resolve_structures("all") == structure_ids()
    assert resolve_structures(" 3J9I,1bxn,3j9i ,4V4R_30s") == ["3j9i", "1bxn", "4v4r_30S"]
    f = tmp_path / "model.pdb"
    f.write_text("END\n")
    assert resolve_structures(["1s3x", str(f)]) == ["1s3x", str(f)]
    with pytest.raises(InputError, match="unknown structure id 'zzz'"):
        resolve_structures("1s3x,zzz")
    with pytest.raises(InputError, match="not found"):
        resolve_structures(str(tmp_path / "missing.cif"))
    with pytest.raises(InputError, match="empty"):
        resolve_structures(" , ")

"""Tests for cryomine.io.star: RELION particle STAR files, RELION 5 tomograms, SHREC and CSV lists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile
from scipy.spatial.transform import Rotation

from cryomine.errors import InputError
from cryomine.geometry import euler_zyz_to_matrix
from cryomine.io.em import zxz_to_relion_zyz
from cryomine.io.optics import OpticsGroup
from cryomine.io.particle_lists import SHREC2019_LAYOUT, ShrecLayout, read_coordinates_csv, read_shrec_particles
from cryomine.io.star import (
    ParticleTable,
    coordinates_xyz_voxels,
    eulers_zyz,
    make_particles,
    particles_pixel_size_a,
    read_optimisation_set,
    read_particles,
    read_tomograms,
    with_optics,
    write_particles,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
WARP = SHARED / "realdata" / "relion5_warptools"
STEM = "warptools_test_4-tomos_10-ptcls_box-32_angpix-12"
LISTS = SHARED / "realdata" / "particle_lists"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not available")
    return path


def random_table(n: int = 17, seed: int = 3) -> ParticleTable:
    rng = np.random.default_rng(seed)
    table = make_particles(
        rng.uniform(0, 500, size=(n, 3)),
        eulers_zyz=rng.uniform(-180, 180, size=(n, 3)),
        tomo_name=[f"TS_{i % 3:02d}" for i in range(n)],
        class_number=rng.integers(1, 4, size=n),
        extra={
            "rlnMyScore": rng.normal(size=n),
            "rlnOriginXAngst": rng.normal(size=n),
            "rlnOriginYAngst": rng.normal(size=n),
            "rlnOriginZAngst": rng.normal(size=n),
        },
    )
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["og1"], "rlnTomoTiltSeriesPixelSize": [1.35],
                           "rlnImagePixelSize": [5.4]})  # fmt: skip
    particles = table.particles.assign(rlnOpticsGroup=1)
    return ParticleTable(particles, optics=optics, other_blocks={"general": {"rlnTomoSubTomosAre2DStacks": 1}})


def no_strays(folder: Path, expected: set[str]) -> None:
    assert {p.name for p in folder.iterdir()} == expected


# ------------------------------------------------------------------------------------------------ round trip


def test_write_read_round_trip_keeps_values_columns_optics_and_blocks(tmp_path):
    table = random_table()
    out = write_particles(tmp_path / "parts.star", table)
    back = read_particles(out)
    assert list(back.particles.columns) == list(table.particles.columns)
    pd.testing.assert_frame_equal(back.particles, table.particles, check_dtype=False, rtol=1e-9, atol=1e-7)
    pd.testing.assert_frame_equal(back.optics, table.optics, check_dtype=False)
    assert back.other_blocks == {"general": {"rlnTomoSubTomosAre2DStacks": 1}}
    assert back.particles_block == "particles"
    np.testing.assert_allclose(coordinates_xyz_voxels(back), coordinates_xyz_voxels(table), rtol=1e-9)
    np.testing.assert_allclose(eulers_zyz(back), eulers_zyz(table), rtol=1e-9, atol=1e-7)
    no_strays(tmp_path, {"parts.star"})


def test_real_relion5_particles_round_trip(tmp_path):
    table = read_particles(need(WARP / f"{STEM}.star"))
    write_particles(tmp_path / "copy.star", table)
    back = read_particles(tmp_path / "copy.star")
    pd.testing.assert_frame_equal(back.particles, table.particles, check_dtype=False, rtol=1e-9)
    pd.testing.assert_frame_equal(back.optics, table.optics, check_dtype=False, rtol=1e-9)
    assert back.other_blocks == table.other_blocks


def test_make_particles_shapes_and_defaults():
    t = make_particles([[1, 2, 3], [4, 5, 6]], tomo_name="TS_1", class_number=2)
    assert len(t) == 2
    assert list(t.particles["rlnTomoName"]) == ["TS_1", "TS_1"]
    assert list(t.particles["rlnClassNumber"]) == [2, 2]
    np.testing.assert_array_equal(eulers_zyz(t), np.zeros((2, 3)))  # no angles -> identity orientation
    np.testing.assert_array_equal(coordinates_xyz_voxels(t), [[1, 2, 3], [4, 5, 6]])
    for bad in ([[1, 2]], [[1, 2, np.nan]]):
        with pytest.raises(InputError, match="coords_xyz"):
            make_particles(bad)
    with pytest.raises(InputError, match="eulers_zyz has 1 rows"):
        make_particles([[1, 2, 3], [4, 5, 6]], eulers_zyz=[[0, 0, 0]])
    with pytest.raises(InputError, match="tomo_name has 3 values for 2"):
        make_particles([[1, 2, 3], [4, 5, 6]], tomo_name=["a", "b", "c"])
    with pytest.raises(InputError, match="class_number must be integers"):
        make_particles([[1, 2, 3]], class_number=1.5)


# ------------------------------------------------------------------------------------------------ optics


def test_optics_round_trip_keeps_coordinates_angles_and_pixel_size(tmp_path):
    rng = np.random.default_rng(11)
    xyz, zyz = rng.uniform(0, 300, size=(23, 3)), rng.uniform(-180, 180, size=(23, 3))
    table = make_particles(xyz, zyz, tomo_name="TS_01", pixel_size_a=8.704)
    assert list(table.particles["rlnOpticsGroup"]) == [1] * 23
    back = read_particles(write_particles(tmp_path / "p.star", table))
    np.testing.assert_allclose(coordinates_xyz_voxels(back), xyz, rtol=1e-9)
    np.testing.assert_allclose(eulers_zyz(back), zyz, rtol=1e-9, atol=1e-7)
    assert particles_pixel_size_a(back) == 8.704
    assert list(back.optics.columns) == ["rlnOpticsGroup", "rlnOpticsGroupName", "rlnImagePixelSize"]
    # the same through write_particles' own pixel size argument, with every optics value known
    og = OpticsGroup(pixel_size_a=8.704, tilt_series_pixel_size_a=2.176, voltage_kv=300, cs_mm=2.7, amplitude_contrast=0.07)
    full = read_particles(write_particles(tmp_path / "q.star", make_particles(xyz, zyz), optics=og))
    row = full.optics.iloc[0]
    assert (row["rlnImagePixelSize"], row["rlnTomoTiltSeriesPixelSize"]) == (8.704, 2.176)
    assert (row["rlnVoltage"], row["rlnSphericalAberration"], row["rlnAmplitudeContrast"]) == (300, 2.7, 0.07)
    np.testing.assert_allclose(coordinates_xyz_voxels(full), xyz, rtol=1e-9)


def test_written_file_parses_with_starfile_into_optics_and_particles(tmp_path):
    xyz = np.array([[1.5, 2.0, 3.25], [10.0, 20.0, 30.0]])
    path = write_particles(tmp_path / "p.star", make_particles(xyz, tomo_name="TS_7"), pixel_size_a=13.5)
    blocks = starfile.read(path, always_dict=True)
    assert list(blocks) == ["optics", "particles"]
    optics, parts = blocks["optics"], blocks["particles"]
    assert isinstance(optics, pd.DataFrame) and isinstance(parts, pd.DataFrame)  # loops, not key-value pairs
    assert optics["rlnOpticsGroup"].tolist() == [1] and optics["rlnOpticsGroupName"].tolist() == ["opticsGroup1"]
    assert optics["rlnImagePixelSize"].tolist() == [13.5]
    assert parts["rlnOpticsGroup"].tolist() == [1, 1] and parts["rlnTomoName"].tolist() == ["TS_7", "TS_7"]
    np.testing.assert_array_equal(parts[["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]].to_numpy(), xyz)


def test_optics_given_and_stored_must_agree(tmp_path):
    table = read_particles(need(WARP / f"{STEM}.star"))  # 4 groups at 12 A, particles name their group
    assert with_optics(table, 12.0).optics.equals(table.optics)  # agreeing value: unchanged
    with pytest.raises(InputError, match="bad.star.*rlnImagePixelSize.*10 was given"):
        write_particles(tmp_path / "bad.star", table, pixel_size_a=10.0)
    with pytest.raises(InputError, match="rlnAmplitudeContrast"):  # stored 0.07
        with_optics(table, optics=OpticsGroup(12.0, amplitude_contrast=0.1))
    filled = with_optics(random_table(), optics=OpticsGroup(5.4, voltage_kv=200.0)).optics  # a missing column is added
    assert filled["rlnVoltage"].tolist() == [200.0] and filled["rlnTomoTiltSeriesPixelSize"].tolist() == [1.35]
    no_groups = ParticleTable(table.particles.drop(columns="rlnOpticsGroup"), optics=table.optics)
    with pytest.raises(InputError, match="lack rlnOpticsGroup.*4 groups"):
        write_particles(tmp_path / "bad.star", no_groups)
    wrong = ParticleTable(table.particles.assign(rlnOpticsGroup=9), optics=table.optics)
    with pytest.raises(InputError, match="missing from data_optics"):
        write_particles(tmp_path / "bad.star", wrong)
    with pytest.raises(InputError, match="pixel size unknown"):
        write_particles(tmp_path / "bad.star", make_particles([[1.0, 2, 3]]))
    with pytest.raises(InputError, match="disagrees"):
        make_particles([[1.0, 2, 3]], pixel_size_a=5.0, optics=OpticsGroup(6.0))
    for bad in ({"pixel_size_a": 0}, {"pixel_size_a": 1, "voltage_kv": -3}, {"pixel_size_a": 1, "amplitude_contrast": 1.5},
                {"pixel_size_a": float("nan")}, {"pixel_size_a": 1, "name": "two words"}):  # fmt: skip
        with pytest.raises(InputError):
            OpticsGroup(**bad)
    assert not (tmp_path / "bad.star").exists() and not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------------ real data


def test_real_relion5_files_load():
    table = read_particles(need(WARP / f"{STEM}.star"))
    assert len(table) == 40
    assert table.particles["rlnTomoName"].nunique() == 4
    assert "general" in table.other_blocks and len(table.optics) == 4
    assert table.particles["rlnTomoVisibleFrames"].str.startswith("[").all()  # unknown string column kept
    tomos = read_tomograms(need(WARP / f"{STEM}_tomograms.star"))
    assert list(tomos["rlnTomoName"]) == [f"Unt_0{i}.tomostar" for i in (83, 50, 76, 88)]
    files = read_optimisation_set(need(WARP / f"{STEM}_optimisation_set.star"))
    assert files["rlnTomoParticlesFile"] == WARP / f"{STEM}.star"
    assert len(read_particles(files["rlnTomoParticlesFile"])) == 40
    assert len(read_tomograms(files["rlnTomoTomogramsFile"])) == 4
    with pytest.raises(InputError, match="optimisation set"):
        read_particles(WARP / f"{STEM}_optimisation_set.star")


def test_real_warptools_coordinates_are_at_export_pixel_size():
    """The WarpTools export writes rlnCoordinate at rlnImagePixelSize (12 A): inside the tomogram only so."""
    table = read_particles(need(WARP / f"{STEM}.star"))
    tomos = read_tomograms(need(WARP / f"{STEM}_tomograms.star")).set_index("rlnTomoName")
    names = table.particles["rlnTomoName"]
    extent_a = tomos.loc[names, ["rlnTomoSizeX", "rlnTomoSizeY", "rlnTomoSizeZ"]].to_numpy() * 1.667
    pos_a = coordinates_xyz_voxels(table) * table.optics["rlnImagePixelSize"].iloc[0]
    assert ((pos_a > 0) & (pos_a < extent_a)).all()
    assert (pos_a.max(axis=0) > 0.5 * extent_a.max(axis=0)).all()  # not all crowded in one corner


def test_real_particles_as_relion5_centred_coordinates(tmp_path):
    """Convert the real positions to RELION 5 centred A, write, read and convert back to voxels."""
    table = read_particles(need(WARP / f"{STEM}.star"))
    tomos = read_tomograms(need(WARP / f"{STEM}_tomograms.star"))
    by_name = tomos.set_index("rlnTomoName")
    names = table.particles["rlnTomoName"]
    size = by_name.loc[names, ["rlnTomoSizeX", "rlnTomoSizeY", "rlnTomoSizeZ"]].to_numpy(dtype=float)
    ts_px = by_name.loc[names, "rlnTomoTiltSeriesPixelSize"].to_numpy(dtype=float)[:, None]
    pos_a = coordinates_xyz_voxels(table) * 12.0
    centred = pos_a - size * ts_px / 2
    df = table.particles.drop(columns=["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"])
    for axis, values in zip("XYZ", centred.T, strict=True):
        df[f"rlnCenteredCoordinate{axis}Angst"] = values
    r5 = ParticleTable(df, optics=table.optics, other_blocks=table.other_blocks)
    write_particles(tmp_path / "r5.star", r5)
    back = read_particles(tmp_path / "r5.star")
    with pytest.raises(InputError, match="tomograms"):
        coordinates_xyz_voxels(back)
    unbinned = coordinates_xyz_voxels(back, WARP / f"{STEM}_tomograms.star")
    np.testing.assert_allclose(unbinned, pos_a / ts_px, rtol=1e-7)
    assert ((unbinned > 0) & (unbinned < size)).all()
    binned_tomos = tomos.assign(rlnTomoTomogramBinning=7.19856)  # the 12 A tomogram of this data set
    binned = coordinates_xyz_voxels(back, binned_tomos)
    np.testing.assert_allclose(binned, coordinates_xyz_voxels(table), rtol=1e-5)
    # pixel size from the optics table when the tomograms table lacks it
    np.testing.assert_allclose(coordinates_xyz_voxels(back, tomos.drop(columns="rlnTomoTiltSeriesPixelSize")), unbinned)
    with pytest.raises(InputError, match="missing from the tomograms table"):
        coordinates_xyz_voxels(back, tomos.iloc[:2])


def test_shrec2019_list_loads_with_zyx_layout():
    path = need(LISTS / "shrec19_model9_particle_locations.txt")
    raw = pd.read_csv(path, sep=r"\s+", header=None)
    table = read_shrec_particles(path, SHREC2019_LAYOUT)
    assert len(table) == 2540
    assert table.particles["rlnClassName"].nunique() == 12
    assert table.particles["rlnClassName"].value_counts()["3cf3"] == 247
    # the first file column is the 200-voxel-thick axis: MRC z
    np.testing.assert_array_equal(coordinates_xyz_voxels(table), raw[[3, 2, 1]].to_numpy())
    assert coordinates_xyz_voxels(table)[:, 2].max() < 200
    # angles (phi, theta, psi) in the (z, y, x) frame: same rotation after reversing the axes
    p = np.eye(3)[::-1]
    for i in (0, 1, 500, 2539):
        phi, theta, psi = raw.loc[i, [4, 5, 6]].to_numpy(dtype=float)
        r_file = Rotation.from_euler("zxz", [phi, theta, psi], degrees=True).as_matrix()
        np.testing.assert_allclose(euler_zyz_to_matrix(eulers_zyz(table)[i]), p @ r_file @ p, atol=1e-9)


def test_shrec21_style_list_loads():
    path = need(LISTS / "shrec21_style_particle_locations.txt")
    table = read_shrec_particles(path)
    assert len(table) == 1466
    counts = table.particles["rlnClassName"].value_counts()
    assert counts["vesicle"] == 5 and counts["fiducial"] == 10 and len(counts) == 15
    assert coordinates_xyz_voxels(table)[:, 2].max() < 200  # x y z with z the thin axis
    unoriented = table.particles["rlnClassName"].isin(["vesicle", "fiducial"]).to_numpy()
    assert (eulers_zyz(table)[unoriented] == 0).all()
    raw = pd.read_csv(path, sep=r"\s+", header=None)
    i = int(np.nonzero(~unoriented)[0][0])
    phi, psi, theta = raw.loc[i, [4, 5, 6]].to_numpy(dtype=float)  # default layout: phi psi theta
    np.testing.assert_allclose(eulers_zyz(table)[i], zxz_to_relion_zyz([phi, psi, theta]), atol=1e-9)


@pytest.mark.parametrize("name, count", [("TS_037_cyto_ribosomes.csv", 1646), ("TS_037_fas.csv", 22)])
def test_coordinate_csvs_load(name, count):
    path = need(LISTS / name)
    table = read_coordinates_csv(path, tomo_name="TS_037")
    assert len(table) == count
    first = [float(v) for v in path.read_text().splitlines()[0].split(",")]
    np.testing.assert_array_equal(coordinates_xyz_voxels(table)[0], first)
    assert set(table.particles["rlnTomoName"]) == {"TS_037"}


def test_coordinate_csv_with_header(tmp_path):
    path = tmp_path / "picks.csv"
    path.write_text("score,Z,Y,X\n0.5,1,2,3\n0.7,4,5,6\n")
    np.testing.assert_array_equal(coordinates_xyz_voxels(read_coordinates_csv(path)), [[3, 2, 1], [6, 5, 4]])


# ------------------------------------------------------------------------------------------------ bad input

STAR_HEAD = "data_particles\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n_rlnCoordinateZ #3\n"


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("empty.star", "", "empty file"),
        ("blank.star", "\n  \n", "empty file"),
        ("prose.star", "hello world\nthis is not a star file\n", "no data blocks"),
        ("noparts.star", "data_optics\n\nloop_\n_rlnOpticsGroup #1\n1\n", "no particle data block"),
        (
            "nocoords.star",
            "data_particles\n\nloop_\n_rlnAngleRot #1\n_rlnAngleTilt #2\n1 2\n",
            "no particle data block",
        ),
        ("text.star", STAR_HEAD + "1 2 3\n4 5 abc\n", "rlnCoordinateZ is not numeric"),
        ("nan.star", STAR_HEAD + "1 2 3\n4 nan 6\n", "rlnCoordinateY has 1 NaN"),
        (
            "part.star",
            STAR_HEAD.replace("_rlnCoordinateZ #3\n", "_rlnCoordinateZ #3\n_rlnAngleRot #4\n") + "1 2 3 4\n",
            "incomplete column triple",
        ),
    ],
)
def test_bad_star_files_name_the_file(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InputError, match=f"{name}.*{message}"):
        read_particles(path)


def test_more_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="gone.star.*not found"):
        read_particles(tmp_path / "gone.star")
    garbage = tmp_path / "garbage.star"
    garbage.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(InputError, match="garbage.star"):
        read_particles(garbage)
    with pytest.raises(InputError, match="tomos.star.*tomograms"):
        read_tomograms(write_particles(tmp_path / "tomos.star", random_table()))
    with pytest.raises(InputError, match="no particle coordinates"):
        ParticleTable(pd.DataFrame({"rlnAngleRot": [1.0]}))
    with pytest.raises(InputError, match="expected a ParticleTable"):
        write_particles(tmp_path / "x.star", pd.DataFrame({"rlnCoordinateX": [1.0]}))
    table = random_table()
    table.particles.loc[2, "rlnCoordinateX"] = np.nan  # mutated after construction: caught on write
    with pytest.raises(InputError, match="bad.star.*rlnCoordinateX has 1 NaN"):
        write_particles(tmp_path / "bad.star", table)
    for name, text in [
        ("short.txt", "1bxn 1 2\n"),
        ("words.txt", "1bxn 1 two 3 0 0 0\n"),
        ("halfnan.txt", "1bxn 1 2 3 10 NaN 20\n"),
        ("empty.txt", ""),
    ]:
        (tmp_path / name).write_text(text)
        with pytest.raises(InputError, match=name):
            read_shrec_particles(tmp_path / name)
    (tmp_path / "bad.csv").write_text("1,2,x\n")
    with pytest.raises(InputError, match="bad.csv.*not numeric"):
        read_coordinates_csv(tmp_path / "bad.csv")
    with pytest.raises(InputError, match="angle_order"):
        ShrecLayout(angle_order=("phi", "phi", "theta"))
    # nothing written by the failed writes
    assert not (tmp_path / "bad.star").exists() and not (tmp_path / "x.star").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_zero_particles_round_trip(tmp_path):
    empty = make_particles(np.zeros((0, 3)))
    back = read_particles(write_particles(tmp_path / "none.star", empty, pixel_size_a=7.5))
    assert len(back) == 0 and set(back.particles.columns) >= {"rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"}
    assert particles_pixel_size_a(back) == 7.5


def test_key_value_blocks_and_relion30_single_block(tmp_path):
    kv = tmp_path / "single.star"
    kv.write_text(
        "data_optics\n\n_rlnOpticsGroup 1\n_rlnTomoTiltSeriesPixelSize 1.35\n\n"
        "data_particles\n\n_rlnCoordinateX 10.5\n_rlnCoordinateY 11\n_rlnCoordinateZ 12\n_rlnTomoName TS_1\n"
    )
    t = read_particles(kv)
    assert len(t) == 1 and t.optics["rlnTomoTiltSeriesPixelSize"].iloc[0] == pytest.approx(1.35)
    np.testing.assert_array_equal(coordinates_xyz_voxels(t), [[10.5, 11.0, 12.0]])
    r30 = tmp_path / "r30.star"
    r30.write_text(
        "data_\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n_rlnCoordinateZ #3\n_rlnOriginX #4\n"
        "1 2 3 0.5\n4 5 6 -0.5\n"
    )
    t30 = read_particles(r30)
    assert t30.particles_block == "" and list(t30.particles["rlnOriginX"]) == [0.5, -0.5] and t30.optics is None
    with pytest.raises(InputError, match="r30_copy.star.*pixel size unknown"):
        write_particles(tmp_path / "r30_copy.star", t30)  # no optics, no pixel size: refused, nothing written
    assert not (tmp_path / "r30_copy.star").exists()
    back = read_particles(write_particles(tmp_path / "r30_copy.star", t30, pixel_size_a=3.2))
    assert back.particles_block == "particles"  # written as RELION 3.1+ with data_optics
    assert list(back.optics["rlnImagePixelSize"]) == [3.2] and list(back.particles["rlnOpticsGroup"]) == [1, 1]
    pd.testing.assert_frame_equal(back.particles.drop(columns="rlnOpticsGroup"), t30.particles, check_dtype=False)

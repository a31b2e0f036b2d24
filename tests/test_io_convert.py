"""Tests for cryomine.io.convert and ``cryomine convert``: motive lists (1-based -> 0-based, shifts, binning,
tomogram names), SHREC and CSV lists -> RELION particles STAR with optics; bad input -> one line, exit 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile
from scipy.spatial.transform import Rotation

from cryomine.cli import main
from cryomine.errors import InputError
from cryomine.geometry import euler_zyz_to_matrix
from cryomine.io import (
    MOTL_COLUMNS,
    ConvertConfig,
    convert_particle_list,
    coordinates_xyz_voxels,
    detect_format,
    eulers_zyz,
    motl_tomo_names,
    particles_pixel_size_a,
    read_coordinates_csv,
    read_motl,
    read_particles,
    read_shrec_particles,
    relion_zyz_to_zxz,
    write_em,
    write_motl,
)
from cryomine.io.particle_lists import SHREC2019_LAYOUT

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CRYOCAT = SHARED / "realdata" / "cryocat_ribosome"
LISTS = SHARED / "realdata" / "particle_lists"
XYZ = ["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not available")
    return path


def planted_motl(n: int = 40, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """A motive list whose particle centres are known 0-based voxels: TOM x = p0 + 1 - shift (exact in float32)."""
    rng = np.random.default_rng(seed)
    p0 = rng.integers(0, 4000, size=(n, 3)) / 8.0  # multiples of 1/8 below 500: exact in float32
    shifts = rng.integers(-16, 17, size=(n, 3)) / 8.0
    zyz = rng.uniform([-180, 0, -180], [180, 180, 180], size=(n, 3))
    tomo_ids = rng.choice([3, 17], size=n)
    motl = pd.DataFrame(np.zeros((n, len(MOTL_COLUMNS))), columns=list(MOTL_COLUMNS))
    motl[["x", "y", "z"]] = p0 + 1.0 - shifts
    motl[["shift_x", "shift_y", "shift_z"]] = shifts
    motl[["phi", "psi", "theta"]] = relion_zyz_to_zxz(zyz)
    motl["tomo_id"], motl["subtomo_id"], motl["class"], motl["score"] = tomo_ids, np.arange(1, n + 1), 1, 0.5
    return motl, p0, zyz, tomo_ids


def run_cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ------------------------------------------------------------------------------------------------ motive lists


@pytest.mark.parametrize("binning", [1, 4])
def test_planted_motive_list_recovers_0_based_positions_exactly(tmp_path, binning):
    motl, p0, zyz, tomo_ids = planted_motl()
    src = write_motl(tmp_path / "planted.em", motl)
    config = ConvertConfig(pixel_size_a=2.176, binning=binning, tomo_name="TS_{:03d}")
    result = convert_particle_list(src, tmp_path / "out.star", config=config)
    assert result.format == "motl" and result.n == len(p0) and result.tomo_names == ("TS_003", "TS_017")
    assert result.pixel_size_a == pytest.approx(2.176 * binning)
    table = read_particles(result.path)
    np.testing.assert_array_equal(coordinates_xyz_voxels(table), p0 / binning)  # exact: no off-by-one, no rounding
    assert particles_pixel_size_a(table) == pytest.approx(2.176 * binning)
    np.testing.assert_allclose(euler_zyz_to_matrix(eulers_zyz(table)), euler_zyz_to_matrix(zyz), atol=2e-6)
    assert table.particles["rlnTomoName"].tolist() == [f"TS_{t:03d}" for t in tomo_ids]
    assert table.particles["rlnTomoParticleId"].tolist() == list(range(1, len(p0) + 1))
    assert table.particles["rlnOpticsGroup"].tolist() == [1] * len(p0)


def test_tomogram_name_patterns():
    assert motl_tomo_names([3, 17, 3]) == ["3", "17", "3"]
    assert motl_tomo_names([3, 17], "TS_{:03d}") == ["TS_003", "TS_017"]
    assert motl_tomo_names([5], "tomo{tomo_id}.tomostar") == ["tomo5.tomostar"]
    assert motl_tomo_names([5, 5], "TS_037") == ["TS_037", "TS_037"]
    with pytest.raises(InputError, match="--tomo-name.*2 tomograms"):
        motl_tomo_names([3, 17], "TS_037")
    for bad in ("TS_{:q}", "TS_{1}", "two words", ""):
        with pytest.raises(InputError, match="--tomo-name"):
            motl_tomo_names([3], bad)


@pytest.mark.parametrize(
    "name, count", [("motl_ribosome_b4_trim_shift_t126.em", 50), ("nn_ribosome_motl.em", 1023), ("nn_tric_motl.em", 139)]
)
def test_real_motive_lists_convert(tmp_path, capsys, name, count):
    src = need(CRYOCAT / name)
    motl = read_motl(src)
    out = tmp_path / "real.star"
    code, stdout, _ = run_cli(capsys, "convert", src, "--out", out, "--pixel-size", 8.704, "--tomo-name", "TS_{}")
    assert code == 0 and f"{count} particles from motl at 8.704" in stdout
    table = read_particles(out)
    tom_centre = motl[["x", "y", "z"]].to_numpy() + motl[["shift_x", "shift_y", "shift_z"]].to_numpy()
    np.testing.assert_allclose(coordinates_xyz_voxels(table), tom_centre - 1, rtol=1e-9, atol=1e-6)
    ref = Rotation.from_euler("zxz", motl[["phi", "theta", "psi"]].to_numpy(), degrees=True).as_matrix()
    np.testing.assert_allclose(euler_zyz_to_matrix(eulers_zyz(table)), ref, atol=1e-6)
    assert set(table.particles["rlnTomoName"]) == {f"TS_{int(t)}" for t in motl["tomo_id"]}
    blocks = starfile.read(out, always_dict=True)
    assert list(blocks) == ["optics", "particles"] and blocks["optics"]["rlnImagePixelSize"].tolist() == [8.704]


def test_motive_list_pixel_size_from_the_em_header(tmp_path):
    motl, p0, _, _ = planted_motl(5)
    values = motl[list(MOTL_COLUMNS)].to_numpy(np.float32).reshape(1, 5, 20)
    src = write_em(tmp_path / "with_size.em", values, voxel_size_a=4.352)
    result = convert_particle_list(src, tmp_path / "o.star", config=ConvertConfig(binning=2))
    assert result.pixel_size_a == pytest.approx(8.704)
    np.testing.assert_array_equal(coordinates_xyz_voxels(read_particles(result.path)), p0 / 2)


# ------------------------------------------------------------------------------------------------ SHREC and CSV


def test_shrec_lists_convert_with_their_layouts(tmp_path):
    s19, s21 = need(LISTS / "shrec19_model9_particle_locations.txt"), need(LISTS / "shrec21_style_particle_locations.txt")
    assert (detect_format(s19), detect_format(s21)) == ("shrec2019", "shrec2021")
    for src, layout, fmt in ((s19, SHREC2019_LAYOUT, "shrec2019"), (s21, None, "shrec2021")):
        ref = read_shrec_particles(src, layout) if layout else read_shrec_particles(src)
        res = convert_particle_list(src, tmp_path / f"{fmt}.star", config=ConvertConfig(pixel_size_a=10.0, binning=2))
        table = read_particles(res.path)
        assert res.format == fmt and len(table) == len(ref) and particles_pixel_size_a(table) == 20.0
        np.testing.assert_array_equal(coordinates_xyz_voxels(table), coordinates_xyz_voxels(ref) / 2)
        np.testing.assert_allclose(eulers_zyz(table), eulers_zyz(ref), atol=1e-7)
        assert set(table.particles["rlnTomoName"]) == {src.stem}
    # --format overrides detection: the 2019 file read as 2021 (x y z order) gives other coordinates
    forced = convert_particle_list(s19, tmp_path / "forced.star", "shrec2021", ConvertConfig(pixel_size_a=10.0))
    ref21 = read_shrec_particles(s19)
    np.testing.assert_array_equal(coordinates_xyz_voxels(read_particles(forced.path)), coordinates_xyz_voxels(ref21))


def test_csv_picks_convert(tmp_path, capsys):
    src = need(LISTS / "TS_037_cyto_ribosomes.csv")
    out = tmp_path / "ribos.star"
    code, stdout, _ = run_cli(capsys, "convert", src, "-o", out, "--pixel-size", 13.48, "--tomo-name", "TS_037",
                              "--voltage", 300, "--cs", 2.7, "--amplitude-contrast", 0.07, "--tilt-series-pixel-size", 1.348)  # fmt: skip
    assert code == 0 and "1646 particles from csv" in stdout
    table = read_particles(out)
    np.testing.assert_array_equal(coordinates_xyz_voxels(table), coordinates_xyz_voxels(read_coordinates_csv(src)))
    row = table.optics.iloc[0]
    assert (row["rlnImagePixelSize"], row["rlnTomoTiltSeriesPixelSize"], row["rlnVoltage"]) == (13.48, 1.348, 300)
    assert set(table.particles["rlnTomoName"]) == {"TS_037"}
    with_header = tmp_path / "picks.dat"
    with_header.write_text("z, y, x, score\n1, 2, 3, 0.5\n4, 5, 6, 0.7\n")
    assert detect_format(with_header) == "csv"
    res = convert_particle_list(with_header, tmp_path / "h.star", config=ConvertConfig(pixel_size_a=5.0, binning=0.5))
    np.testing.assert_array_equal(coordinates_xyz_voxels(read_particles(res.path)), [[6, 4, 2], [12, 10, 8]])


# ------------------------------------------------------------------------------------------------ bad input


def _bad_inputs(tmp_path: Path) -> dict[str, Path]:
    motl, _, _, _ = planted_motl(4)
    good = write_motl(tmp_path / "good.em", motl)
    cut = tmp_path / "cut.em"
    cut.write_bytes(good.read_bytes()[:-10])
    files = {"good": good, "cut": cut, "volume.em": write_em(tmp_path / "volume.em", np.zeros((4, 5, 6), np.float32))}
    for name, text in (("nan.csv", "1,2,3\n4,nan,6\n"), ("two.csv", "1,2\n3,4\n"), ("words.txt", "hello world\n"),
                       ("shrec_bad.txt", "1bxn 1 2 x 0 0 0\n"), ("empty.csv", "")):  # fmt: skip
        files[name] = tmp_path / name
        files[name].write_text(text)
    files["binary.dat"] = tmp_path / "binary.dat"
    files["binary.dat"].write_bytes(bytes(range(256)))
    return files


@pytest.mark.parametrize(
    "case, needle",
    [
        ("missing", "missing.em: file not found"),
        ("truncated", "cut.em: truncated .em file"),
        ("volume_not_motl", "volume.em: not a TOM motive list"),
        ("no_pixel_size", "--pixel-size"),
        ("unknown_format_option", "--format: unknown input format 'pdb'"),
        ("undetectable", "words.txt: cannot tell the particle list format"),
        ("binary", "binary.dat: binary file"),
        ("nan", "nan.csv: coordinates contain NaN"),
        ("wrong_columns", "two.csv: expected at least 3"),
        ("shrec_not_numeric", "shrec_bad.txt: coordinates are not numeric"),
        ("empty", "empty.csv: empty file"),
        ("bad_binning", "--binning: must be a number > 0"),
        ("bad_pixel_size", "--pixel-size: must be a number > 0"),
        ("one_name_many_tomograms", "--tomo-name"),
        ("pattern_for_csv", "--tomo-name: a name pattern"),
        ("not_star", "--out: output must be a .star file"),
        ("bad_voltage", "--voltage must be > 0"),
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, capsys, case, needle):
    files = _bad_inputs(tmp_path)
    out = tmp_path / "out" / "x.star"
    good, px = files["good"], ["--pixel-size", "8"]
    args = {
        "missing": [tmp_path / "missing.em", *px],
        "truncated": [files["cut"], *px],
        "volume_not_motl": [files["volume.em"], *px],
        "no_pixel_size": [good],
        "unknown_format_option": [good, "--format", "pdb", *px],
        "undetectable": [files["words.txt"], *px],
        "binary": [files["binary.dat"], *px],
        "nan": [files["nan.csv"], *px],
        "wrong_columns": [files["two.csv"], *px],
        "shrec_not_numeric": [files["shrec_bad.txt"], "--format", "shrec2019", *px],
        "empty": [files["empty.csv"], *px],
        "bad_binning": [good, *px, "--binning", "0"],
        "bad_pixel_size": [good, "--pixel-size", "-1"],
        "one_name_many_tomograms": [good, *px, "--tomo-name", "TS_1"],
        "pattern_for_csv": [files["nan.csv"], *px, "--tomo-name", "TS_{}"],
        "not_star": [good, *px, "--out", tmp_path / "out" / "x.csv"],
        "bad_voltage": [good, *px, "--voltage", "-300"],
    }[case]
    if "--out" not in args:
        args = [*args, "--out", out]
    if case == "one_name_many_tomograms":
        assert len(set(read_motl(good)["tomo_id"])) > 1  # the planted list spans tomograms 3 and 17
    code, _, err = run_cli(capsys, "convert", *args)
    assert code == 2, err
    line = err.strip()
    assert line.startswith("error: ") and "\n" not in line and needle in line, line
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # nothing half-written

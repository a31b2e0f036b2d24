"""Real-data conventions of pick / extract: protein-dark inputs (--invert, --invert-template, the warning heuristic),
unset voxel sizes (--voxel-size), users' MRC templates (own box and mask, Fourier rescaling), face exclusion
(--border-vox) and MRC origins carried into every written map. Small seeded volumes, coarse angular steps."""

from __future__ import annotations

import json
import warnings
from dataclasses import replace
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from scipy import ndimage

from cryomine.cli import main
from cryomine.errors import InputError
from cryomine.geometry.validate import resolve_voxel_size
from cryomine.io import read_mrc, read_particles, write_mrc
from cryomine.io.star import coordinates_xyz_voxels
from cryomine.io.subtomo_h5 import read_rows
from cryomine.pick import DogConfig, PeakConfig, TemplateMatchConfig, match_template, pick_dog, spherical_mask
from cryomine.pick.contrast import ContrastWarning, template_contrast, tomogram_contrast
from cryomine.pick.template import match_template_file
from cryomine.pick.template_input import fourier_rescale, load_match_template
from cryomine.simulate.templates import prepare_template
from cryomine.structures import load_structure
from cryomine.structures.maps import pad_to_cube

ORIGIN = (120.0, -35.5, 40.0)


@pytest.fixture(scope="module")
def tomo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The simulated 32x72x64 tomogram of test_pick_cli (10 Å, 5 x 1s3x + 5 x 3gl1, SNR 1), its truth STAR, a
    protein-dark (negated) copy, a copy with an unset (0) voxel size and a copy with a non-zero origin."""
    from cryomine.simulate.imaging import ImagingConfig
    from cryomine.simulate.tomogram import TomogramConfig, simulate_tomogram

    root = tmp_path_factory.mktemp("pick_conv")
    bright = root / "tomo.mrc"
    config = TomogramConfig(shape_zyx=(32, 72, 64), particles=10, structures=("1s3x", "3gl1"), seed=2, imaging=ImagingConfig(snr=1.0))
    simulate_tomogram(bright, config, progress=False)
    data = read_mrc(bright).data
    write_mrc(root / "dark.mrc", -data, 10.0)
    (root / "dark.json").write_text(bright.with_suffix(".json").read_text())  # the same metadata (tilts, optics)
    with mrcfile.new(root / "novs.mrc") as m:  # mrcfile's default header: voxel size 0
        m.set_data(data)
    write_mrc(root / "origin.mrc", data, 10.0, ORIGIN)
    return {"bright": bright, "truth": bright.with_suffix(".star"), "dark": root / "dark.mrc", "novs": root / "novs.mrc",
            "origin": root / "origin.mrc"}  # fmt: skip


def _picks(star: Path) -> tuple[np.ndarray, np.ndarray]:
    df = read_particles(star).particles
    return coordinates_xyz_voxels(read_particles(star)), df["rlnAutopickFigureOfMerit"].to_numpy(float)


def _blobs(voxel_a: float, box: int, sigma_a: float = 12.0, shift_a=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Four Gaussian blobs at fixed positions (Å from voxel box // 2, plus ``shift_a``) rendered at ``voxel_a``:
    no symmetry, centre of mass off the box centre."""
    centres = np.array([[0.0, 0, 0], [0, 0, 40], [0, 35, 0], [30, -10, -10]]) + np.asarray(shift_a)
    grid = (np.indices((box,) * 3) - box // 2) * float(voxel_a)
    out = np.zeros((box,) * 3)
    for c, w in zip(centres, (3.0, 2.0, 1.5, 1.2)):
        out += w * np.exp(-((grid - c[:, None, None, None]) ** 2).sum(axis=0) / (2 * sigma_a**2))
    return out.astype(np.float32)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


# ---------------------------------------------------------------- protein-dark inputs


def test_contrast_heuristic_on_simulated_tomogram_noise_and_templates(tomo):
    bright = read_mrc(tomo["bright"]).data
    assert not tomogram_contrast(bright).dark and tomogram_contrast(bright).statistic > 1.0
    assert tomogram_contrast(-bright).dark
    assert not tomogram_contrast(-bright, invert=True).dark
    rng = np.random.default_rng(1)
    for shape in ((16, 20, 18), (40, 48, 44)):  # pure noise, either sign: never looks dark
        for _ in range(3):
            noise = rng.standard_normal(shape)
            assert not tomogram_contrast(noise).dark and not tomogram_contrast(-noise).dark
    t = prepare_template("1s3x", 10.0).density
    assert not template_contrast(t).dark and template_contrast(-t).dark
    ball = spherical_mask(t.shape[0], t.shape[0] / 3)
    assert not template_contrast(t, ball).dark and template_contrast(-t + 5.0, ball).dark  # an offset changes nothing


def _run(args: list[str], capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = main(args)
    return code, capsys.readouterr().err


def test_dark_tomogram_warns_and_invert_gives_the_same_picks(tomo, tmp_path, capsys):
    for method in (["--radius", "45"], ["--template", "3gl1", "--angular-step", "60", "--top-n", "6"]):
        code, err = _run(["pick", str(tomo["bright"]), *method, "--out", str(tmp_path / "b.star")], capsys)
        assert code == 0 and "warning" not in err, err
        code, err = _run(["pick", str(tomo["dark"]), *method, "--out", str(tmp_path / "d.star")], capsys)
        lines = [ln for ln in err.splitlines() if ln.startswith("warning:")]
        assert code == 0 and len(lines) == 1 and "dark.mrc" in lines[0] and "--invert" in lines[0], err
        code, err = _run(["pick", str(tomo["dark"]), *method, "--invert", "--out", str(tmp_path / "i.star")], capsys)
        assert code == 0 and "warning" not in err, err
        (xyz_b, s_b), (xyz_i, s_i) = _picks(tmp_path / "b.star"), _picks(tmp_path / "i.star")
        assert len(s_b) >= 5
        np.testing.assert_array_equal(xyz_i, xyz_b)
        np.testing.assert_allclose(s_i, s_b, rtol=1e-6, atol=1e-6)
    # --invert on a protein-bright tomogram: the warning says so
    code, err = _run(["pick", str(tomo["bright"]), "--radius", "45", "--invert", "--out", str(tmp_path / "x.star")], capsys)
    assert code == 0 and "after --invert" in err and "drop --invert" in err


def test_extract_invert_gives_protein_bright_boxes(tomo, tmp_path, capsys):
    code, _ = _run(["extract", str(tomo["bright"]), str(tomo["truth"]), "--size", "12", "--out", str(tmp_path / "b.h5")], capsys)
    assert code == 0
    code, err = _run(["extract", str(tomo["dark"]), str(tomo["truth"]), "--size", "12", "--out", str(tmp_path / "d.h5")], capsys)
    assert code == 0 and err.count("warning:") == 1 and "--invert" in err
    code, err = _run(["extract", str(tomo["dark"]), str(tomo["truth"]), "--size", "12", "--invert", "--out", str(tmp_path / "i.h5")], capsys)
    assert code == 0 and "warning" not in err
    bright = read_rows(tmp_path / "b.h5", ("subtomograms",))["subtomograms"]
    inverted = read_rows(tmp_path / "i.h5", ("subtomograms",))["subtomograms"]
    np.testing.assert_array_equal(inverted, bright)


# ---------------------------------------------------------------- voxel size


def test_resolve_voxel_size_never_guesses():
    assert resolve_voxel_size(8.7, None) == 8.7
    assert resolve_voxel_size(0.0, 10.0, "t.mrc", "--voxel-size") == 10.0
    assert resolve_voxel_size(5.0, 10.0) == 10.0  # a wrong header is overridden
    with pytest.raises(InputError, match=r"t\.mrc: header voxel size is 0 .*--voxel-size"):
        resolve_voxel_size(0.0, None, "t.mrc", "--voxel-size")
    with pytest.raises(InputError, match="--voxel-size: voxel size must be > 0"):
        resolve_voxel_size(10.0, -1.0, "t.mrc", "--voxel-size")


def test_unset_voxel_size_is_an_error_and_the_flag_supplies_it(tomo, tmp_path, capsys):
    novs = str(tomo["novs"])
    for args in (["pick", novs, "--radius", "45", "--out", str(tmp_path / "o" / "p.star")],
                 ["pick", novs, "--template", "3gl1", "--out", str(tmp_path / "o" / "p.star")],
                 ["extract", novs, str(tomo["truth"]), "--size", "12", "--out", str(tmp_path / "o" / "e.h5")]):  # fmt: skip
        code, err = _run(args, capsys)
        assert code == 2 and err.count("\n") == 1 and "novs.mrc" in err and "--voxel-size" in err and "Traceback" not in err, err
    assert not (tmp_path / "o").exists()
    code, _ = _run(["pick", novs, "--radius", "45", "--voxel-size", "10", "--out", str(tmp_path / "p.star")], capsys)
    assert code == 0 and read_mrc(tmp_path / "p_scores.mrc").voxel_size_a == pytest.approx(10.0)
    meta = json.loads((tmp_path / "p.json").read_text())
    assert meta["voxel_size_a"] == 10.0 and meta["radius_vox"] == pytest.approx(4.5)
    # a wrong header (10 Å) overridden: the radius in voxels follows the flag
    code, _ = _run(["pick", str(tomo["bright"]), "--radius", "45", "--voxel-size", "7.5", "--out", str(tmp_path / "w.star")], capsys)
    assert code == 0 and json.loads((tmp_path / "w.json").read_text())["radius_vox"] == pytest.approx(6.0)
    code, _ = _run(["extract", novs, str(tomo["truth"]), "--size", "12", "--voxel-size", "10", "--out", str(tmp_path / "e.h5")], capsys)
    assert code == 0


# ---------------------------------------------------------------- users' MRC templates


def _plant_volume(template: np.ndarray, centre_zyx: tuple[int, int, int], shape=(30, 34, 32), seed=4) -> np.ndarray:
    vol = 0.05 * np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    m, c = template.shape[0], template.shape[0] // 2
    z, y, x = (v - c for v in centre_zyx)
    vol[z : z + m, y : y + m, x : x + m] += template
    return vol


def test_mrc_template_keeps_its_box_centre_and_mask(tmp_path):
    t = _blobs(10.0, 23, shift_a=(20.0, 0.0, -20.0)) + 0.5  # centre of mass ~3 voxels off voxel 11; a background level
    com_offset = np.array(ndimage.center_of_mass(t - 0.5)) - 11
    assert np.linalg.norm(com_offset) > 2.5
    write_mrc(tmp_path / "t.mrc", t, 10.0)
    kept = load_match_template(tmp_path / "t.mrc", 10.0)
    assert kept.kind == "map" and not kept.rescaled and kept.mask is None
    np.testing.assert_allclose(kept.density, t - 0.5, atol=1e-5)  # the same box and voxels; only the solvent level set to 0
    moved = load_match_template(tmp_path / "t.mrc", 10.0, TemplateMatchConfig(recenter_template=True))
    assert moved.kind == "recentred map" and np.linalg.norm(np.array(ndimage.center_of_mass(moved.density)) - moved.density.shape[0] // 2) < 0.6
    # plant the template (its voxel 9 at the centre) and recover the centre, not the centre of mass; with the user's mask
    centre = (15, 17, 16)
    write_mrc(tmp_path / "v.mrc", _plant_volume(t - 0.5, centre), 10.0)
    write_mrc(tmp_path / "mask.mrc", (t - 0.5 > 0.2 * (t.max() - 0.5)).astype(np.float32), 10.0)
    cfg = TemplateMatchConfig(angular_step_deg=90.0, microscope=None, wedge=False, peaks=PeakConfig(top_n=1))
    res, paths = match_template_file(tmp_path / "v.mrc", tmp_path / "t.mrc", tmp_path / "p.star", cfg, mask=tmp_path / "mask.mrc")
    np.testing.assert_array_equal(res.picks.coords_zyx[0], centre)
    assert res.picks.scores[0] > 0.95
    meta = json.loads(paths[-1].read_text())
    assert meta["template_box_vox"] == 23 and meta["template_kind"] == "map"
    res_c, _ = match_template_file(tmp_path / "v.mrc", tmp_path / "t.mrc", tmp_path / "c.star", replace(cfg, recenter_template=True))
    assert np.abs(res_c.picks.coords_zyx[0] - (np.array(centre) + com_offset)).max() <= 1.0  # the centre of mass instead
    write_mrc(tmp_path / "small_mask.mrc", np.ones((17, 17, 17), np.float32), 10.0)
    with pytest.raises(InputError, match=r"small_mask\.mrc: mask is 17x17x17 .* 23x23x23"):
        load_match_template(tmp_path / "t.mrc", 10.0, mask=tmp_path / "small_mask.mrc")
    with pytest.raises(InputError, match="drop --recenter-template"):
        load_match_template(tmp_path / "t.mrc", 10.0, TemplateMatchConfig(recenter_template=True), mask=tmp_path / "mask.mrc")
    with pytest.raises(InputError, match="--invert-template is for MRC templates"):
        load_match_template("3gl1", 10.0, TemplateMatchConfig(invert_template=True))


def test_dark_template_with_invert_template_gives_the_same_picks(tmp_path):
    t = _blobs(10.0, 19)
    write_mrc(tmp_path / "t.mrc", t, 10.0)
    write_mrc(tmp_path / "dark_t.mrc", 3.0 - t, 10.0)  # protein dark on a grey background
    write_mrc(tmp_path / "v.mrc", _plant_volume(t, (14, 16, 17)), 10.0)
    cfg = TemplateMatchConfig(angular_step_deg=90.0, microscope=None, peaks=PeakConfig(top_n=3))
    ref, _ = match_template_file(tmp_path / "v.mrc", tmp_path / "t.mrc", tmp_path / "a.star", cfg)
    with pytest.raises(InputError, match=r"dark_t\.mrc: .*no density above the solvent level.*--invert-template"):
        match_template_file(tmp_path / "v.mrc", tmp_path / "dark_t.mrc", tmp_path / "b.star", cfg)
    noisy = 3.0 - t + 0.05 * np.random.default_rng(0).standard_normal(t.shape).astype(np.float32)
    write_mrc(tmp_path / "noisy_dark_t.mrc", noisy, 10.0)
    with pytest.warns(ContrastWarning, match=r"noisy_dark_t\.mrc: looks protein-dark .*add --invert-template"):
        match_template_file(tmp_path / "v.mrc", tmp_path / "noisy_dark_t.mrc", tmp_path / "b.star", cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ContrastWarning)
        inv, _ = match_template_file(tmp_path / "v.mrc", tmp_path / "dark_t.mrc", tmp_path / "c.star", replace(cfg, invert_template=True))
    np.testing.assert_array_equal(inv.picks.coords_zyx, ref.picks.coords_zyx)
    np.testing.assert_allclose(inv.picks.scores, ref.picks.scores, atol=1e-5)


@pytest.mark.parametrize("source_a, box", [(5.0, 40), (7.3, 27), (20.0, 10), (12.5, 16)])
def test_fourier_rescaled_template_matches_one_made_at_the_target_voxel_size(tmp_path, source_a, box):
    """Blobs rendered at ``source_a`` and rescaled to 10 Å match the same blobs rendered at 10 Å in the rescaled
    box (same physical centre), also where the ratio needs a padded box (7.3 Å: 27 -> 37 -> 27 voxels)."""
    write_mrc(tmp_path / "t.mrc", _blobs(source_a, box, sigma_a=15.0), source_a)
    tmpl = load_match_template(tmp_path / "t.mrc", 10.0)
    assert tmpl.rescaled and tmpl.voxel_size_a == pytest.approx(10.0, rel=0.002)
    direct = _blobs(tmpl.voxel_size_a, tmpl.density.shape[0], sigma_a=15.0)
    assert _corr(tmpl.density, direct) > 0.95
    assert np.abs(tmpl.density - direct).max() < 0.1 * direct.max()
    out, vs = fourier_rescale(_blobs(source_a, box, sigma_a=15.0), tmpl.source_voxel_size_a, 10.0)
    np.testing.assert_allclose(out, tmpl.density, atol=1e-6)  # (the loader also sets the solvent level to 0)
    assert vs == tmpl.voxel_size_a


def test_rescaled_structure_map_matches_the_structure_computed_at_the_target_voxel_size(tmp_path):
    """1s3x computed at 5 Å, saved as a user's MRC and rescaled to 10 Å, against 1s3x computed at 10 Å (both
    centred on voxel n // 2; compared in a common box)."""
    write_mrc(tmp_path / "s5.mrc", load_structure("1s3x", voxel_size_a=5.0).data, 5.0)
    tmpl = load_match_template(tmp_path / "s5.mrc", 10.0)
    direct = load_structure("1s3x", voxel_size_a=10.0).data
    n = max(tmpl.density.shape[0], direct.shape[0])
    assert tmpl.voxel_size_a == 10.0 and _corr(pad_to_cube(tmpl.density, n), pad_to_cube(direct, n)) > 0.95


def test_rescaled_mask_follows_the_template_and_impossible_ratios_are_refused(tmp_path):
    t = _blobs(5.0, 40)
    write_mrc(tmp_path / "t.mrc", t, 5.0)
    write_mrc(tmp_path / "m.mrc", spherical_mask(40, 14.0), 5.0)
    tmpl = load_match_template(tmp_path / "t.mrc", 10.0, mask=tmp_path / "m.mrc")
    assert tmpl.density.shape == tmpl.mask.shape == (20, 20, 20)
    assert np.mean((tmpl.mask > 0.5) == (spherical_mask(20, 7.0) > 0.5)) > 0.98
    with pytest.raises(InputError, match=r"x\.mrc: cannot rescale the 8³ box from 10 to 7\.1 Å/voxel exactly"):
        fourier_rescale(np.ones((8, 8, 8), np.float32), 10.0, 7.1, source="x.mrc")  # no box of 8-16 voxels x 10/7.1 is whole
    with mrcfile.new(tmp_path / "novs_t.mrc") as m:
        m.set_data(t)
    with pytest.raises(InputError, match=r"novs_t\.mrc: header voxel size is 0"):
        load_match_template(tmp_path / "novs_t.mrc", 10.0)


# ---------------------------------------------------------------- face exclusion


def test_border_excludes_picks_at_the_faces():
    rng = np.random.default_rng(2)
    shape, r = (30, 40, 36), 3.0
    zz, yy, xx = np.indices(shape)
    vol = 0.2 * rng.standard_normal(shape).astype(np.float32)
    centres = [(0, 20, 18), (15, 0, 10), (15, 20, 35), (29, 39, 0), (1, 10, 30), (15, 20, 18), (10, 30, 12)]
    for p in centres:
        vol += (((zz - p[0]) ** 2 + (yy - p[1]) ** 2 + (xx - p[2]) ** 2) <= r * r).astype(np.float32)
    vol = ndimage.gaussian_filter(vol, 0.7)

    def face_distance(coords: np.ndarray) -> np.ndarray:
        return np.minimum(coords, np.array(shape) - 1 - coords).min(axis=1)

    none = pick_dog(vol, DogConfig(radius_vox=r, peaks=PeakConfig(top_n=20, border_vox=0)))
    assert (face_distance(none.picks.coords_zyx) < 2).sum() >= 3  # the planted face particles are picked without a border
    for border in (None, 4, 8):
        res = pick_dog(vol, DogConfig(radius_vox=r, peaks=PeakConfig(top_n=20, border_vox=border)))
        expected = 2 if border is None else border  # default: ceil(radius / 2)
        assert len(res.picks) >= 2 and face_distance(res.picks.coords_zyx).min() >= expected
    # template matching: the same rule
    t = _blobs(10.0, 9, sigma_a=8.0)
    tm = np.zeros(shape, np.float32)
    tm[:9, 10:19, 10:19] += t  # centre z = 4
    tm[13:22, 20:29, 20:29] += t
    tm += 0.05 * rng.standard_normal(shape).astype(np.float32)
    cfg = TemplateMatchConfig(angular_step_deg=90.0, microscope=None, peaks=PeakConfig(top_n=2, border_vox=0))
    assert face_distance(match_template(tm, t, 10.0, cfg).picks.coords_zyx).min() == 4
    cfg = replace(cfg, peaks=PeakConfig(top_n=2, border_vox=5))
    assert face_distance(match_template(tm, t, 10.0, cfg).picks.coords_zyx).min() >= 5
    with pytest.raises(InputError, match="--border-vox"):
        PeakConfig(border_vox=-1)


def test_border_vox_option(tomo, tmp_path, capsys):
    code, _ = _run(["pick", str(tomo["bright"]), "--radius", "45", "--border-vox", "9", "--out", str(tmp_path / "p.star")], capsys)
    assert code == 0
    xyz, _ = _picks(tmp_path / "p.star")
    zyx = xyz[:, ::-1]
    assert len(zyx) >= 3 and (zyx >= 9).all() and (zyx < np.array([32, 72, 64]) - 9).all()
    assert json.loads((tmp_path / "p.json").read_text())["border_vox"] == 9


# ---------------------------------------------------------------- origins


def test_written_maps_carry_the_tomogram_origin_and_voxel_size(tomo, tmp_path, capsys):
    src = str(tomo["origin"])
    assert _run(["pick", src, "--template", "3gl1", "--angular-step", "90", "--top-n", "3", "--out", str(tmp_path / "t.star")], capsys)[0] == 0
    assert _run(["pick", src, "--radius", "45", "--out", str(tmp_path / "d.star")], capsys)[0] == 0
    assert _run(["atlas", src, str(tomo["truth"]), "--out", str(tmp_path / "a.mrc")], capsys)[0] == 0
    for name in ("t_scores.mrc", "t_angles.mrc", "d_scores.mrc", "a.mrc", "a_labels.mrc"):
        vol = read_mrc(tmp_path / name)
        assert vol.origin_zyx_a == pytest.approx(ORIGIN) and vol.voxel_size_a == pytest.approx(10.0), name

"""FSC: analytic cases (identity, independent noise, low-pass cut-off), thresholds, errors, files and CLI."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from scipy import ndimage

from cryomine.cli.main import main
from cryomine.errors import InputError
from cryomine.evaluate.fsc import ABOVE, BELOW, CROSSED, crossing, fsc, fsc_files, resolution_at, write_fsc_csv
from cryomine.io.mrc import Volume, write_mrc


def _smooth_volume(shape=(32, 32, 32), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.standard_normal(shape), 1.0).astype(np.float32)


def _hard_lowpass(vol: np.ndarray, cutoff: float) -> np.ndarray:
    f = [np.fft.fftfreq(n) for n in vol.shape]
    kz, ky, kx = np.meshgrid(f[0], f[1], np.fft.rfftfreq(vol.shape[2]), indexing="ij")
    keep = np.sqrt(kz**2 + ky**2 + kx**2) <= cutoff
    return np.fft.irfftn(np.fft.rfftn(vol) * keep, s=vol.shape, axes=(0, 1, 2)).astype(np.float32)


def test_fsc_of_a_map_with_itself_is_one_in_every_shell():
    vol = _smooth_volume((20, 24, 28), seed=1)  # non-cubic box
    r = fsc(vol, vol, voxel_size_a=4.0)
    assert np.allclose(r.fsc, 1.0, atol=1e-9)
    assert r.resolution_0143_a == pytest.approx(8.0) and r.resolution_05_a == pytest.approx(8.0)  # Nyquist
    assert r.fsc_sum == pytest.approx(len(r.fsc) - 1)
    assert r.frequency_a_inv[-1] == pytest.approx(0.5 / 4.0)


def test_fsc_of_independent_noise_is_near_zero():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((2, 40, 40, 40)).astype(np.float32)
    r = fsc(a, b)
    # a shell with m components has std 1/sqrt(m); the outer shells hold thousands
    assert np.abs(r.fsc[4:]).max() < 0.1
    assert abs(np.mean(r.fsc[1:])) < 0.03
    assert r.resolution_0143_a > 4.0  # crosses right away, far from Nyquist


def test_fsc_with_a_lowpass_copy_crosses_half_at_the_cutoff():
    vol = np.random.default_rng(5).standard_normal((48, 48, 48)).astype(np.float32)
    cutoff = 0.25  # cycles/voxel -> 4 voxels = 8 Å at 2 Å/voxel
    r = fsc(vol, _hard_lowpass(vol, cutoff), voxel_size_a=2.0)
    assert r.resolution_05_a == pytest.approx(2.0 / cutoff, rel=0.06)
    shells = np.arange(len(r.fsc)) / 48
    assert (r.fsc[(shells > 0) & (shells < cutoff - 0.03)] > 0.95).all()
    assert (r.fsc[shells > cutoff + 0.03] < 0.05).all()


def test_mask_restricts_the_comparison_to_its_support():
    rng = np.random.default_rng(7)
    a = _smooth_volume((32, 32, 32), seed=2)
    b = a.copy()
    b[:, :, 20:] = rng.standard_normal(b[:, :, 20:].shape)  # differs only outside the mask
    mask = np.zeros_like(a)
    mask[:, :, :14] = 1.0
    assert fsc(a, b).fsc_sum < fsc(a, b, mask=mask).fsc_sum
    assert np.allclose(fsc(a, b, mask=mask).fsc, 1.0, atol=1e-9)


def test_resolution_interpolates_the_crossing():
    freq = np.array([0.0, 0.1, 0.2, 0.3])
    curve = np.array([1.0, 0.8, 0.4, 0.1])
    # 0.5 is crossed between 0.1 (0.8) and 0.2 (0.4): at 0.1 + 0.75 * 0.1 = 0.175
    assert resolution_at(freq, curve, 0.5, 1.0) == pytest.approx(1 / 0.175)
    assert resolution_at(freq, np.ones(4), 0.143, 2.5) == pytest.approx(5.0)


def test_different_shapes_or_voxel_sizes_are_clear_errors(tmp_path):
    a = _smooth_volume((16, 16, 16))
    with pytest.raises(InputError, match="different shapes"):
        fsc(a, a[:15])
    with pytest.raises(InputError, match="different voxel sizes"):
        fsc(Volume(a, 2.0), Volume(a, 3.0))
    with pytest.raises(InputError, match="mask"):
        fsc(a, a, mask=np.ones((8, 8, 8), np.float32))
    with pytest.raises(InputError, match="constant"):
        fsc(a, np.zeros_like(a))
    write_mrc(tmp_path / "a.mrc", a, 2.0)
    write_mrc(tmp_path / "b.mrc", a, 3.0)
    with pytest.raises(InputError, match="voxel size"):
        fsc_files(tmp_path / "a.mrc", tmp_path / "b.mrc")


def test_fsc_cli_prints_resolutions_and_writes_csv_and_png(tmp_path, capsys):
    vol = np.random.default_rng(9).standard_normal((32, 32, 32)).astype(np.float32)
    write_mrc(tmp_path / "a.mrc", vol, 5.0)
    write_mrc(tmp_path / "b.mrc", _hard_lowpass(vol, 0.25), 5.0)
    code = main(["fsc", str(tmp_path / "a.mrc"), str(tmp_path / "b.mrc"), "--out", str(tmp_path / "f.csv"), "--out", str(tmp_path / "f.png")])
    out = capsys.readouterr().out
    assert code == 0
    assert "FSC 0.5" in out and "FSC 0.143" in out and "FSC sum" in out
    rows = (tmp_path / "f.csv").read_text().splitlines()
    assert rows[0].startswith("shell,frequency_a_inv") and len(rows) == 1 + 17
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["fsc", str(tmp_path / "a.mrc"), str(tmp_path / "b.mrc"), "--json"]) == 0
    assert '"resolution_fsc0143_a"' in capsys.readouterr().out
    write_mrc(tmp_path / "c.mrc", vol[:16], 5.0)
    assert main(["fsc", str(tmp_path / "a.mrc"), str(tmp_path / "c.mrc")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "c.mrc" in err[0] and "shape" in err[0]


def test_csv_round_trip(tmp_path):
    vol = _smooth_volume((24, 24, 24), seed=4)
    r = fsc(vol, vol + 0.1 * _smooth_volume((24, 24, 24), seed=8), voxel_size_a=3.0)
    path = write_fsc_csv(tmp_path / "curve.csv", r)
    table = np.genfromtxt(path, delimiter=",", names=True)
    assert np.allclose(table["fsc"], r.fsc, atol=1e-6)
    assert np.allclose(table["frequency_a_inv"], r.frequency_a_inv, atol=1e-6)


def test_no_crossing_is_said_in_words_never_a_number_beyond_the_box(tmp_path, capsys):
    """A map against its negative (FSC -1 everywhere) has no resolution; against itself (FSC 1) it is better than
    Nyquist. 38 voxels of 11 Å = a 418 Å box: interpolating between DC and shell 1 gave 975 Å here (1671 Å in
    the issue); no printed resolution may exceed the box."""
    vol = _smooth_volume((38, 38, 38), seed=6)
    anti = fsc(vol, -vol, voxel_size_a=11.0)
    assert np.allclose(anti.fsc[1:], -1.0, atol=1e-9)
    assert anti.crossing(0.143) == anti.crossing(0.5) == BELOW
    assert math.isinf(anti.resolution_0143_a) and math.isinf(anti.resolution_05_a)
    assert anti.describe(0.143) == "none (FSC below 0.143 at all frequencies)"
    assert anti.to_dict()["resolution_fsc0143_a"] is None and anti.to_dict()["crossing_fsc0143"] == "below"
    same = fsc(vol, vol, voxel_size_a=11.0)
    assert same.crossing(0.143) == ABOVE and same.resolution_0143_a == pytest.approx(22.0)
    assert same.describe(0.143).startswith("better than 22.00 Å (FSC stays above 0.143 to Nyquist")
    # a crossing between shells 1 and 2 stays within the box
    curve = np.array([1.0, 0.3, 0.1, 0.0])
    freq = np.arange(4) / (38 * 11.0)
    assert fsc(vol, vol).crossing(0.143) == ABOVE and resolution_at(freq, curve, 0.143, 11.0) <= 418.0
    assert crossing(curve, 0.143) == CROSSED and crossing(curve, 0.5) == BELOW
    write_mrc(tmp_path / "a.mrc", vol, 11.0)
    write_mrc(tmp_path / "neg.mrc", -vol, 11.0)
    for other, words in (("neg.mrc", "none (FSC below 0.143 at all frequencies)"), ("a.mrc", "better than 22.00 Å (FSC stays above 0.143")):
        capsys.readouterr()
        assert main(["fsc", str(tmp_path / "a.mrc"), str(tmp_path / other)]) == 0
        out = capsys.readouterr().out
        assert words in out, out
        assert all(float(v) <= 418.0 for v in re.findall(r"([0-9.]+) Å", out)), out
    assert main(["fsc", str(tmp_path / "a.mrc"), str(tmp_path / "neg.mrc"), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["resolution_fsc0143_a"] is None and rep["crossing_fsc05"] == "below"


def test_fsc_of_maps_without_voxel_size_needs_the_flag(tmp_path, capsys):
    """A header voxel size of 0 is not read as 1 Å (the resolution would be in the wrong unit): the flag gives it."""
    import mrcfile

    rng = np.random.default_rng(0)
    data = rng.standard_normal((16, 16, 16)).astype(np.float32)
    for name in ("a.mrc", "b.mrc"):
        with mrcfile.new(tmp_path / name) as m:  # mrcfile's default header: voxel size 0
            m.set_data(data)
    args = ["fsc", str(tmp_path / "a.mrc"), str(tmp_path / "b.mrc"), "--json"]
    capsys.readouterr()
    assert main(args) == 2 and "--voxel-size" in capsys.readouterr().err
    assert main([*args, "--voxel-size", "4"]) == 0
    import json

    result = json.loads(capsys.readouterr().out)
    # identical maps: the FSC stays above 0.143 to Nyquist, 2 x 4 Å (not 2 x 1 Å from an unset header)
    assert result["voxel_size_a"] == 4.0 and result["resolution_fsc0143_a"] == 8.0 and result["crossing_fsc0143"] == "above"

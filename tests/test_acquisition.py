"""Acquisition metadata: the object, its readers (real RELION 5 / WarpTools files, IMOD, WarpTools XML) and the
tilt-sign convention checked against cryomine's own projector."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cryomine.acquisition import Acquisition, MetadataWarning, read_acquisition, resolve_acquisition
from cryomine.errors import InputError
from cryomine.io.mrc import write_mrc
from cryomine.simulate.tilt import project

REAL = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "relion5_warptools"
TOMOGRAMS_STAR = REAL / "warptools_test_4-tomos_10-ptcls_box-32_angpix-12_tomograms.star"


def test_round_trip_and_derived_range():
    acq = Acquisition(voxel_size_a=8.7, tilt_angles_deg=(-54.0, -3.0, 0.0, 62.0), defocus_um=(3.1, 3.0, 2.9, 3.3),
                      dose_e_a2=(6, 3, 0, 9), voltage_kv=300, cs_mm=2.7, amplitude_contrast=0.1, polarity="dark",
                      sources=("x",))  # fmt: skip
    assert acq.tilt_range_deg == (-54.0, 62.0)
    assert acq.defocus_at_zero_tilt_um == 2.9  # the tilt nearest 0 degrees
    assert Acquisition.from_dict(json.loads(json.dumps(acq.to_dict()))) == acq


@pytest.mark.parametrize("bad, option", [
    ({"voxel_size_a": 0}, "--voxel-size"), ({"tilt_range_deg": (30, -30)}, "--tilt-min"), ({"polarity": "grey"}, "--polarity"),
    ({"tilt_angles_deg": (0, 3), "defocus_um": (1, 2, 3)}, "--defocus"), ({"voltage_kv": float("nan")}, "--voltage"),
])  # fmt: skip
def test_bad_values_name_their_flag(bad, option):
    with pytest.raises(InputError, match=option):
        Acquisition(**bad)


def test_flags_win_and_missing_fields_are_warned_not_invented():
    flags = Acquisition().updated(tilt_min_deg=-54, tilt_max_deg=62, defocus_um=3.5)
    merged = flags.merged(Acquisition(tilt_angles_deg=(-60.0, 60.0), defocus_um=(5.0,), voltage_kv=200.0, sources=("file",)))
    assert merged.tilt_range_deg == (-54.0, 62.0) and merged.defocus_um == (3.5,) and merged.voltage_kv == 200.0
    assert merged.sources == ("flags", "file")
    with pytest.warns(MetadataWarning, match="tilt range unknown.*assuming -60..60"):
        assert Acquisition().resolved_tilt_range("average") == (-60.0, 60.0)
    with pytest.warns(MetadataWarning, match="defocus unknown"):
        assert Acquisition().microscope("average") is None
    with pytest.warns(MetadataWarning, match="cs_mm = 2.7.*--cs"):  # voltage given, Cs and amplitude contrast assumed
        assert Acquisition(defocus_um=(3.5,), voltage_kv=200.0).microscope("average").voltage_kv == 200.0
    with pytest.raises(InputError, match="voxel_size_a \\(--voxel-size\\)"):
        Acquisition().require("voxel_size_a", step="extract")


def test_relion5_warptools_tomograms_star():
    if not TOMOGRAMS_STAR.exists():
        pytest.skip("real RELION 5 files not available")
    acq = read_acquisition(TOMOGRAMS_STAR, tomo_name="Unt_050")  # listed as Unt_050.tomostar
    assert (acq.voltage_kv, acq.cs_mm, acq.amplitude_contrast, acq.polarity) == (300.0, 2.7, 0.07, "dark")
    assert len(acq.tilt_angles_deg) == 37 and acq.voxel_size_a is None  # no rlnTomoTomogramBinning: unknown
    # each tilt's angle is the beam direction of its projection matrix (third row), computed independently here
    import starfile

    tilts = starfile.read(TOMOGRAMS_STAR, always_dict=True)["Unt_050.tomostar"]
    z = np.array([[float(v) for v in s.strip("[]").split(",")] for s in tilts["rlnTomoProjZ"]])[:, :3]
    np.testing.assert_allclose(np.sin(np.radians(acq.tilt_angles_deg)), z[:, 0] / np.linalg.norm(z, axis=1), atol=1e-6)
    defocus = (tilts["rlnDefocusU"] + tilts["rlnDefocusV"]).to_numpy() / 2e4
    np.testing.assert_allclose(acq.defocus_um, defocus)
    assert acq.dose_e_a2[int(np.argmin(acq.dose_e_a2))] == 0.0
    with pytest.raises(InputError, match="say which with --tomo-name"):
        read_acquisition(TOMOGRAMS_STAR)
    with pytest.raises(InputError, match="no tomogram named 'TS_99'"):
        read_acquisition(TOMOGRAMS_STAR, tomo_name="TS_99")


def test_tilt_sign_matches_cryomine_projector(tmp_path):
    """RELION/IMOD tilt Y puts a point (x, z) at detector x' = x cos Y + z sin Y (Ry(Y) applied to the specimen).
    cryomine's projector at the angles the reader gives for a ``.tlt`` of those Y must put it at the same column."""
    d, w, x0, z0 = 33, 33, 6, 9
    vol = np.zeros((d, 1, w), np.float32)
    vol[d // 2 + z0, 0, w // 2 + x0] = 1.0
    y_tilts = np.array([-50.0, -20.0, 35.0, 60.0])
    (tmp_path / "ts.tlt").write_text("\n".join(map(str, y_tilts)))
    thetas = read_acquisition(tmp_path / "ts.tlt").tilt_angles_deg
    proj = project(vol, thetas).numpy()[:, 0]  # (n_tilts, w)
    columns = (proj * np.arange(w)).sum(1) / proj.sum(1) - w // 2
    relion = x0 * np.cos(np.radians(y_tilts)) + z0 * np.sin(np.radians(y_tilts))
    np.testing.assert_allclose(columns, relion, atol=0.15)  # linear interpolation of the projector
    assert np.abs(columns - (x0 * np.cos(np.radians(y_tilts)) - z0 * np.sin(np.radians(y_tilts)))).max() > 5  # sign matters


def test_imod_tlt_and_ctfplotter_are_negated_into_cryomine_angles(tmp_path):
    tlt = tmp_path / "ts.tlt"
    tlt.write_text("-51.0\n0.0\n 3.0\n57.0\n")
    assert read_acquisition(tlt).tilt_angles_deg == (51.0, -0.0, -3.0, -57.0)
    defocus = tmp_path / "ts.defocus"
    defocus.write_text("1 0 0.0 0.0 0.0 3\n1 1 -51.0 -51.0 3100.0\n2 2 0.0 0.0 3000.0\n3 4 3.0 57.0 2900.0\n")
    acq = read_acquisition(defocus)
    assert acq.tilt_angles_deg == (51.0, -0.0, -3.0, -57.0) and acq.defocus_um == (3.1, 3.0, 2.9, 2.9)
    bad = tmp_path / "bad.tlt"
    bad.write_text("1.0\nabc\n")
    with pytest.raises(InputError, match="bad.tlt.*line 2"):
        read_acquisition(bad)


def test_warp_xml(tmp_path):
    xml = tmp_path / "TS_01.xml"
    xml.write_text('<TiltSeries PixelSize="1.35"><Angles>-3\n0\n3</Angles><Dose>3\n0\n6</Dose>'
                   '<CTF><Param Name="Voltage" Value="300" /><Param Name="Cs" Value="2.7" />'
                   '<Param Name="Amplitude" Value="0.07" /><Param Name="Defocus" Value="3.2" /></CTF>'
                   '<GridCTF Width="1" Height="1" Depth="3"><Node X="0" Y="0" Z="0" Value="3.1" />'
                   '<Node X="0" Y="0" Z="1" Value="3.2" /><Node X="0" Y="0" Z="2" Value="3.3" /></GridCTF></TiltSeries>')
    acq = read_acquisition(xml)
    assert acq.tilt_angles_deg == (3.0, -0.0, -3.0) and acq.defocus_um == (3.1, 3.2, 3.3) and acq.dose_e_a2 == (3, 0, 6)
    assert (acq.voltage_kv, acq.cs_mm, acq.amplitude_contrast, acq.voxel_size_a) == (300.0, 2.7, 0.07, 1.35)


def test_resolve_reads_sidecars_and_treats_a_zero_header_as_unknown(tmp_path):
    tomo = write_mrc(tmp_path / "TS_01.mrc", np.zeros((4, 5, 6), np.float32), 1.0)
    (tmp_path / "TS_01.tlt").write_text("-60\n0\n54\n")
    acq = resolve_acquisition(tomo, header_voxel_size_a=0.0)
    assert acq.tilt_range_deg == (-54.0, 60.0) and acq.voxel_size_a is None
    assert resolve_acquisition(tomo, header_voxel_size_a=8.7).voxel_size_a == 8.7
    flags = Acquisition().updated(voxel_size_a=9.0)
    assert resolve_acquisition(tomo, header_voxel_size_a=8.7, overrides=flags).voxel_size_a == 9.0


def test_per_tilt_values_of_another_tilt_list_are_not_paired():
    angles = Acquisition(tilt_angles_deg=(-60.0, 0.0, 60.0), sources=("a.tlt",))
    other = Acquisition(tilt_angles_deg=(-3.0, 0.0, 3.0, 6.0), defocus_um=(3.0, 3.1, 3.2, 3.3), sources=("b.defocus",))
    with pytest.warns(MetadataWarning, match=r"defocus_um \(read from b.defocus\) has 4 values for 3 tilt angles"):
        merged = angles.merged(other)
    assert merged.tilt_angles_deg == (-60.0, 0.0, 60.0) and merged.defocus_um is None

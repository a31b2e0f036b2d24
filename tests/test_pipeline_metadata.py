"""The acquisition travels from tomogram to average: a simulated tomogram with an asymmetric tilt range
(-54..+62) and a non-default defocus (3.5 µm) -> extract -> average uses that wedge and phase-flips; averaging
from the STAR + tomogram and from the extracted dataset sees identical particles; every output keeps positions."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import starfile

from cryomine.acquisition import MetadataWarning, MicroscopeConfig
from cryomine.average import AverageConfig, load_particles, run_average
from cryomine.cli import main
from cryomine.io import read_particles
from cryomine.io.star import coordinates_xyz_voxels
from cryomine.simulate.imaging import ImagingConfig
from cryomine.simulate.tilt import TiltSeriesConfig
from cryomine.simulate.tomogram import TomogramConfig, simulate_tomogram

TILT = (-54.0, 62.0)
DEFOCUS = 3.5


@pytest.fixture(scope="module")
def tomogram(tmp_path_factory):
    out = tmp_path_factory.mktemp("pipeline") / "ts_asym.mrc"
    imaging = ImagingConfig(tilt=TiltSeriesConfig(*TILT, 4.0), microscope=MicroscopeConfig(defocus_um=DEFOCUS), snr=1.0)
    config = TomogramConfig(shape_zyx=(32, 72, 64), particles=8, structures=("1s3x",), seed=5, imaging=imaging)
    simulate_tomogram(out, config, progress=False)
    return out


def test_extract_records_the_tomogram_acquisition(tomogram, tmp_path, capsys):
    out = tmp_path / "picks.h5"
    assert main(["extract", str(tomogram), str(tomogram.with_suffix(".star")), "--size", "16", "--out", str(out)]) == 0
    assert "tilt range -54..62 degrees, defocus 3.5 µm" in capsys.readouterr().out
    data = load_particles(out)
    assert data.acquisition.tilt_range_deg == TILT and data.acquisition.defocus_um == (DEFOCUS,)
    assert data.acquisition.polarity == "bright" and data.tomo_name == "ts_asym"
    truth = coordinates_xyz_voxels(read_particles(tomogram.with_suffix(".star")))
    np.testing.assert_allclose(data.coords_xyz, truth, atol=1e-4)  # positions, not the box centre


def test_both_routes_give_identical_particles_and_the_dataset_wedge(tomogram, tmp_path):
    star = tomogram.with_suffix(".star")
    assert main(["extract", str(tomogram), str(star), "--size", "16", "--out", str(tmp_path / "d.h5")]) == 0
    from_dataset = load_particles(tmp_path / "d.h5")
    from_star = load_particles(star, tomogram, 16)
    assert np.array_equal(from_dataset.particles, from_star.particles)
    np.testing.assert_allclose(from_dataset.coords_xyz, from_star.coords_xyz, atol=1e-4)
    assert from_star.acquisition.tilt_range_deg == from_dataset.acquisition.tilt_range_deg == TILT
    with warnings.catch_warnings():
        warnings.simplefilter("error", MetadataWarning)  # nothing is assumed: the metadata says it all
        result = run_average(from_dataset, AverageConfig(iterations=1, initial_iterations=0, seed=0))
    assert result.tilt_range_deg == TILT and result.phase_flipped
    assert from_dataset.acquisition.microscope("test").defocus_um == DEFOCUS


def test_average_cli_keeps_positions_and_warns_when_metadata_is_missing(tomogram, tmp_path, capsys):
    star = tomogram.with_suffix(".star")
    out = tmp_path / "avg"
    assert main(["average", str(star), "--tomogram", str(tomogram), "--box", "16", "--iterations", "1", "--quiet",
                 "--out", str(out)]) == 0  # fmt: skip
    assert "warning:" not in capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tilt_range_deg"] == list(TILT) and summary["phase_flipped"] is True
    blocks = starfile.read(out / "particles.star", always_dict=True)
    parts = blocks["particles"]
    truth = read_particles(star).particles
    np.testing.assert_allclose(parts[["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]].to_numpy(),
                               truth[["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]].to_numpy(), atol=1e-4)
    assert set(parts["rlnTomoName"]) == {"ts_asym"} and blocks["optics"]["rlnImagePixelSize"].tolist() == [10.0]
    assert "rlnImageName" not in parts  # no image files to name: the boxes are cut by whoever reads the STAR
    # the same tomogram without its metadata file: the assumption is named on stderr, and --acquisition fixes it
    bare = tmp_path / "bare.mrc"
    shutil.copy(tomogram, bare)
    assert main(["average", str(star), "--tomogram", str(bare), "--box", "16", "--iterations", "1", "--quiet",
                 "--out", str(tmp_path / "bare_avg")]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "warning: average: tilt range unknown" in err and "assuming -60..60" in err and "defocus unknown" in err
    assert json.loads((tmp_path / "bare_avg" / "summary.json").read_text())["tilt_range_deg"] == [-60.0, 60.0]
    assert main(["average", str(star), "--tomogram", str(bare), "--box", "16", "--iterations", "1", "--quiet",
                 "--acquisition", str(tomogram.with_suffix(".json")), "--out", str(tmp_path / "meta_avg")]) == 0  # fmt: skip
    assert "warning:" not in capsys.readouterr().err
    assert json.loads((tmp_path / "meta_avg" / "summary.json").read_text())["tilt_range_deg"] == list(TILT)


def test_em_tomogram_gives_the_same_boxes_as_mrc(tomogram, tmp_path):
    """A TOM .em copy of the tomogram (no voxel size in its header: the metadata gives it) extracts the same boxes."""
    from cryomine.io.em import write_em
    from cryomine.io.mrc import read_mrc

    em = write_em(tmp_path / "ts_asym.em", read_mrc(tomogram).data)
    shutil.copy(tomogram.with_suffix(".json"), tmp_path / "ts_asym.json")
    star = tomogram.with_suffix(".star")
    assert main(["extract", str(em), str(star), "--size", "16", "--out", str(tmp_path / "em.h5")]) == 0
    assert main(["extract", str(tomogram), str(star), "--size", "16", "--out", str(tmp_path / "mrc.h5")]) == 0
    a, b = load_particles(tmp_path / "em.h5"), load_particles(tmp_path / "mrc.h5")
    assert np.array_equal(a.particles, b.particles) and a.voxel_size_a == b.voxel_size_a == 10.0
    (tmp_path / "ts_asym.json").unlink()  # no metadata, no voxel size in an .em header: refused, naming the flag
    assert main(["extract", str(em), str(star), "--size", "16", "--out", str(tmp_path / "none.h5")]) == 2
    assert not (tmp_path / "none.h5").exists()

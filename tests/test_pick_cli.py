"""CLI of the picking pipeline on one small simulated tomogram: pick (DoG, template), evaluate-picks, extract,
atlas, the predictions join, and bad input -> one line, exit 2, nothing written."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryomine.cli import main
from cryomine.io import make_particles, read_mrc, read_particles, write_mrc, write_particles
from cryomine.io.star import coordinates_xyz_voxels
from cryomine.io.subtomo_h5 import read_header, read_rows
from cryomine.structures import list_structures
from reference_metrics import max_matching, pick_scores, star_xyz


@pytest.fixture(scope="module")
def tomo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 32x72x64 tomogram at 10 Å with 5 x 1s3x and 5 x 3gl1 at SNR 1, and its truth STAR."""
    from cryomine.simulate.imaging import ImagingConfig
    from cryomine.simulate.tomogram import TomogramConfig, simulate_tomogram

    out = tmp_path_factory.mktemp("pick_cli") / "tomo.mrc"
    config = TomogramConfig(shape_zyx=(32, 72, 64), particles=10, structures=("1s3x", "3gl1"), seed=2, imaging=ImagingConfig(snr=1.0))
    simulate_tomogram(out, config, progress=False)
    return out, out.with_suffix(".star")


def _json(capsys: pytest.CaptureFixture[str]) -> dict:
    return json.loads(capsys.readouterr().out)


def _reference_scores(picks_star: Path, truth_star: Path, cls: str | None = None) -> dict[str, float]:
    """Pick scores recomputed from the STAR files (hit: within half the true class's radius, 10 Å voxels); with
    ``cls``, picks of that class (all picks of a single-class picker) against true particles of that class."""
    names = read_particles(truth_star).particles["rlnClassName"].astype(str).to_numpy()
    diameter = {info.id: info.diameter_a for info in list_structures()}
    limit = np.array([0.5 * diameter[n] / 2 / 10.0 for n in names])
    picks, truth = star_xyz(picks_star), star_xyz(truth_star)
    if cls is not None:
        truth, limit = truth[names == cls], limit[names == cls]
    return pick_scores(max_matching(picks, truth, limit), len(picks), len(truth))


def test_dog_pick_and_evaluate(tomo, tmp_path, capsys):
    mrc, truth = tomo
    out = tmp_path / "dog.star"
    assert main(["pick", str(mrc), "--radius", "45", "--out", str(out)]) == 0
    picks = read_particles(out).particles
    assert {"rlnCoordinateX", "rlnAutopickFigureOfMerit", "rlnTomoName"} <= set(picks.columns)
    assert np.all(np.diff(picks["rlnAutopickFigureOfMerit"].to_numpy()) <= 0)  # best first
    assert read_mrc(tmp_path / "dog_scores.mrc").data.shape == (32, 72, 64)
    capsys.readouterr()
    assert main(["evaluate-picks", str(out), str(truth), "--json"]) == 0
    rep = _json(capsys)
    assert rep["n_true"] == 10 and rep["localisation"]["recall"] >= 0.8
    want = _reference_scores(out, truth)
    assert {k: rep["localisation"][k] for k in want} == pytest.approx(want, abs=1e-12)
    assert rep["localisation_and_class"] is None and set(rep["per_class"]) == {"1s3x", "3gl1"}


def test_template_pick_writes_scores_angles_and_finds_its_class(tomo, tmp_path, capsys):
    mrc, truth = tomo
    out = tmp_path / "tm.star"
    assert main(["pick", str(mrc), "--method", "template", "--template", "3gl1", "--angular-step", "45", "--top-n", "5", "--out", str(out)]) == 0
    table = read_particles(out)
    df = table.particles
    assert len(df) == 5 and set(df["rlnClassName"]) == {"3gl1"}
    scores = read_mrc(tmp_path / "tm_scores.mrc")
    index = read_mrc(tmp_path / "tm_angles.mrc").data
    angles = pd.read_csv(tmp_path / "tm_angles.csv")
    assert scores.data.shape == index.shape == (32, 72, 64) and scores.voxel_size_a == pytest.approx(10.0)
    assert list(angles.columns) == ["index", "rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"] and len(angles) == 176
    assert index.min() >= 0 and index.max() < len(angles) and np.all(index == np.round(index))
    xyz = coordinates_xyz_voxels(table).astype(int)
    for (x, y, z), (_, row) in zip(xyz, df.iterrows()):
        assert scores.data[z, y, x] == pytest.approx(row["rlnAutopickFigureOfMerit"], abs=1e-5)
        k = int(index[z, y, x])
        np.testing.assert_allclose(angles.iloc[k, 1:].to_numpy(float), row[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy(float), atol=1e-4)
    meta = json.loads((tmp_path / "tm.json").read_text())
    assert meta["method"] == "template" and meta["n_orientations"] == 176 and meta["voxel_size_a"] == 10.0
    capsys.readouterr()
    assert main(["evaluate-picks", str(out), str(truth), "--json"]) == 0
    rep = _json(capsys)
    assert rep["per_class"]["3gl1"]["localisation_and_class"]["recall"] >= 0.8
    want = _reference_scores(out, truth, "3gl1")  # every pick is labelled 3gl1
    assert {k: rep["per_class"]["3gl1"]["localisation_and_class"][k] for k in want} == pytest.approx(want, abs=1e-12)


def test_extract_builds_a_dataset_row_per_pick(tomo, tmp_path):
    mrc, truth = tomo
    out = tmp_path / "picks.h5"
    assert main(["extract", str(mrc), str(truth), "--size", "16", "--out", str(out)]) == 0
    header = read_header(out)
    assert header.n_written == 10 and header.size == 16 and header.voxel_size_a == pytest.approx(10.0)
    assert sorted(header.class_names) == ["1s3x", "3gl1"] and not header.has_ground_truth
    rows = read_rows(out, ("subtomograms", "coords_xyz", "class_id"))
    xyz = coordinates_xyz_voxels(read_particles(truth))
    np.testing.assert_allclose(rows["coords_xyz"], xyz, atol=1e-3)
    vol = read_mrc(mrc).data
    for box, p in zip(rows["subtomograms"], np.rint(xyz[:, ::-1]).astype(int)):
        assert box[8, 8, 8] == vol[tuple(p)]


def test_atlas_and_predictions_join(tomo, tmp_path, capsys):
    mrc, truth = tomo
    out = tmp_path / "atlas.mrc"
    assert main(["atlas", str(mrc), str(truth), "--out", str(out)]) == 0
    assert (tmp_path / "atlas.png").stat().st_size > 1000 and read_mrc(out).data.shape == (32, 72, 64)
    labels = read_mrc(tmp_path / "atlas_labels.mrc").data
    assert set(np.unique(labels).astype(int)) == {0, 1, 2}
    # predictions.star of 'cryomine predict' (in another order): joined to the picks by tomogram and position;
    # swap two classes to make 2 errors
    truth_table = read_particles(truth)
    names = truth_table.particles["rlnClassName"].astype(str).to_numpy()
    pred = names.copy()
    pred[[0, 1]] = pred[[1, 0]]
    xyz = coordinates_xyz_voxels(truth_table)
    tomo_name = truth_table.particles["rlnTomoName"].astype(str).to_numpy()
    predictions = make_particles(xyz[::-1], tomo_name=list(tomo_name[::-1]), extra={"cmClassName": pred[::-1]})
    write_particles(tmp_path / "predictions.star", predictions, pixel_size_a=10.0)
    capsys.readouterr()
    assert main(["evaluate-picks", str(truth), str(truth), "--classes", str(tmp_path / "predictions.star"), "--json"]) == 0
    rep = _json(capsys)
    assert rep["localisation"]["f1"] == 1.0
    wrong = int(pred[0] != names[0]) + int(pred[1] != names[1])
    assert rep["localisation_and_class"]["tp"] == 10 - wrong
    assert main(["atlas", str(mrc), str(truth), "--classes", str(tmp_path / "predictions.star"), "--out", str(tmp_path / "a2.mrc")]) == 0
    # picks relabelled to another tomogram score nothing against this tomogram's particles
    other = truth_table.particles.copy()
    other["rlnTomoName"] = "TS_73"
    write_particles(tmp_path / "other.star", replace(truth_table, particles=other))
    capsys.readouterr()
    assert main(["evaluate-picks", str(tmp_path / "other.star"), str(truth), "--json"]) == 0
    assert _json(capsys)["localisation"]["tp"] == 0
    # a prediction missing for some picks is refused, not joined by row number
    write_particles(tmp_path / "short.star", make_particles(xyz[:5], tomo_name=list(tomo_name[:5]), extra={"cmClassName": pred[:5]}),
                    pixel_size_a=10.0)  # fmt: skip
    assert main(["evaluate-picks", str(truth), str(truth), "--classes", str(tmp_path / "short.star")]) == 2


def _empty_star(path: Path) -> Path:
    write_particles(path, make_particles(np.zeros((0, 3))), pixel_size_a=10.0)
    return path


@pytest.mark.parametrize(
    "case, needle",
    [
        ("empty_star_evaluate", "no particles"),
        ("empty_star_extract", "no particles"),
        ("angular_step_zero", "angular step"),
        ("template_too_large", "larger than the tomogram"),
        ("bad_method", "method"),
        ("dog_without_radius", "radius"),
        ("atlas_without_classes", "no class names"),
    ],
)
def test_bad_input_one_line_exit_2(tomo, tmp_path, capsys, case, needle):
    mrc, truth = tomo
    empty = _empty_star(tmp_path / "empty.star")
    small = tmp_path / "small.mrc"
    write_mrc(small, np.random.default_rng(0).standard_normal((16, 20, 18)).astype(np.float32), 10.0)
    no_class = tmp_path / "noclass.star"
    write_particles(no_class, make_particles(np.array([[10.0, 10, 10]])), pixel_size_a=10.0)
    out = tmp_path / "out" / "x.star"
    args = {
        "empty_star_evaluate": ["evaluate-picks", str(empty), str(truth)],
        "empty_star_extract": ["extract", str(mrc), str(empty), "--size", "16", "--out", str(tmp_path / "out" / "x.h5")],
        "angular_step_zero": ["pick", str(mrc), "--template", "3gl1", "--angular-step", "0", "--out", str(out)],
        "template_too_large": ["pick", str(small), "--template", "4v4r", "--tilt-min", "-60", "--tilt-max", "60", "--no-ctf",
                               "--out", str(out)],
        "bad_method": ["pick", str(mrc), "--method", "magic", "--out", str(out)],
        "dog_without_radius": ["pick", str(mrc), "--out", str(out)],
        "atlas_without_classes": ["atlas", str(mrc), str(no_class), "--out", str(tmp_path / "out" / "a.mrc")],
    }[case]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and err.count("\n") == 0 and needle in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_simulated_tomogram_writes_its_class_map_beside_the_truth(tomo):
    """``<stem>_classes.mrc``: int8, the tomogram's shape and voxel size, each true particle's centre voxel
    labelled with its rlnClassNumber, and the JSON naming every label."""
    import mrcfile

    from cryomine.io.star import coordinates_xyz_voxels, read_particles

    tomogram, truth = tomo
    with mrcfile.open(tomogram.with_name("tomo_classes.mrc")) as mrc, mrcfile.open(tomogram) as t:
        labels = mrc.data.copy()
        assert labels.dtype == np.int8 and labels.shape == t.data.shape and float(mrc.voxel_size.x) == pytest.approx(10.0)
    table = read_particles(truth)
    zyx = np.round(coordinates_xyz_voxels(table)[:, ::-1]).astype(int)
    np.testing.assert_array_equal(labels[tuple(zyx.T)], table.particles["rlnClassNumber"].to_numpy())
    names = json.loads(tomogram.with_suffix(".json").read_text())["class_map_labels"]
    assert names == {"0": "background", "1": "1s3x", "2": "3gl1", "3": "membrane"}  # the membrane label always named
    assert 0.0 < (labels > 0).mean() < 0.5

"""``cryomine run PROJECT`` (issue 18, items 1-2 and 5): a two-tomogram project on a local Dask cluster equals two
single runs; resume skips finished tomograms and redoes an interrupted one; the RELION 5 project round-trips; the
copick write-back is read back with copick's own API; bad tomograms fail alone."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import cryomine.resources as resources
from cryomine.cli import main
from cryomine.errors import InputError
from cryomine.geometry.euler import euler_zyz_to_matrix
from cryomine.io import read_mrc
from cryomine.io.star import coordinates_xyz_voxels, eulers_zyz, read_optimisation_set, read_particles, read_tomograms
from cryomine.project import BatchOptions, ProjectConfig, read_project, run_project, run_tomogram, tomogram_folder
from cryomine.viewer import get_reader, layer_data
from test_report_browser import _render, browser  # noqa: F401  (the headless Chromium fixture)

CONFIG = ProjectConfig(average_iterations=1, average_min_particles=2, top_n=14)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    d = tmp_path_factory.mktemp("project")
    src = d / "src"
    for seed in (1, 2):
        assert main(["simulate", "tomogram", str(src / f"TS_0{seed}.mrc"), "--shape", "40,96,96", "--particles", "14",
                     "--structures", "3j9i,4v4r,1bxn,6utj", "--seed", str(seed), "--snr", "1"]) == 0  # fmt: skip
    return src


@pytest.fixture(scope="module")
def dask_run(project, tmp_path_factory):
    out = tmp_path_factory.mktemp("dask") / "out"
    result = run_project(project, out, CONFIG, BatchOptions(workers=2, threads=1, progress=False))
    return out, result


def _same_tomogram_outputs(a, b):
    pa, pb = read_particles(a / "predict" / "predictions.star"), read_particles(b / "predict" / "predictions.star")
    np.testing.assert_array_equal(coordinates_xyz_voxels(pa), coordinates_xyz_voxels(pb))
    assert list(pa.particles["rlnClassName"]) == list(pb.particles["rlnClassName"])
    np.testing.assert_allclose(pa.particles["cmClassProbability"].astype(float), pb.particles["cmClassProbability"].astype(float), atol=1e-6)
    sa, sb = json.loads((a / "summary.json").read_text()), json.loads((b / "summary.json").read_text())
    assert sa["class_counts"] == sb["class_counts"] and sa["averages"].keys() == sb["averages"].keys()
    for avg in sa["averages"].values():
        np.testing.assert_allclose(read_mrc(a / avg["folder"] / "average.mrc").data, read_mrc(b / avg["folder"] / "average.mrc").data, atol=1e-5)
    assign_a = pd.read_csv(a / "discover" / "assignments.csv")
    assign_b = pd.read_csv(b / "discover" / "assignments.csv")
    np.testing.assert_array_equal(assign_a["cluster"], assign_b["cluster"])


def test_project_on_dask_equals_single_runs(project, dask_run, tmp_path):
    out, result = dask_run
    assert sorted(result.done) == ["TS_01", "TS_02"] and not result.failed and not result.skipped
    for tomo in read_project(project):
        single = tmp_path / tomo.name
        summary = run_tomogram(tomo, single, CONFIG, threads=1)
        assert summary["picks"] == 14 and sum(summary["class_counts"].values()) == 14
        _same_tomogram_outputs(tomogram_folder(out, tomo.name), single)
    totals = json.loads((out / "summary.json").read_text())["class_totals"]
    assert sum(totals.values()) == 28
    html = (out / "report.html").read_text()
    assert "Tomogram TS_01" in html and "Tomogram TS_02" in html and 'alt="isosurfaces"' in html


def test_resume_skips_finished_and_redoes_interrupted(project, dask_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(dask_run[0], out)
    kept = tomogram_folder(out, "TS_01") / "picks.star"
    before = kept.stat().st_mtime_ns
    (tomogram_folder(out, "TS_02") / "summary.json").unlink()  # TS_02 was interrupted before its last write
    result = run_project(project, out, CONFIG, BatchOptions(workers=0, threads=1, progress=False))
    assert result.skipped == ["TS_01"] and result.done == ["TS_02"]
    assert kept.stat().st_mtime_ns == before  # the finished tomogram was not touched
    _same_tomogram_outputs(tomogram_folder(out, "TS_02"), tomogram_folder(dask_run[0], "TS_02"))
    again = run_project(project, out, CONFIG, BatchOptions(workers=0, progress=False))
    assert again.skipped == ["TS_01", "TS_02"] and not again.done
    with pytest.raises(InputError, match="other settings .*average_iterations: 1 -> 2"):
        run_project(project, out, ProjectConfig(average_iterations=2, average_min_particles=2, top_n=14), BatchOptions(workers=0))


def test_relion5_project_round_trips(project, dask_run):
    out, _ = dask_run
    files = read_optimisation_set(out / "relion" / "optimisation_set.star")
    table = read_particles(files["rlnTomoParticlesFile"])
    assert {"rlnCenteredCoordinateXAngst", "rlnTomoName", "rlnClassName"} <= set(table.particles.columns)
    xyz = coordinates_xyz_voxels(table, files["rlnTomoTomogramsFile"])
    for name in ("TS_01", "TS_02"):
        predicted = read_particles(tomogram_folder(out, name) / "predict" / "predictions.star")
        sel = table.particles["rlnTomoName"].to_numpy() == name
        np.testing.assert_allclose(xyz[sel], coordinates_xyz_voxels(predicted), atol=1e-6)
    tomos = read_tomograms(files["rlnTomoTomogramsFile"])
    assert list(tomos["rlnTomoName"]) == ["TS_01", "TS_02"] and (tomos["rlnTomoSizeZ"] == 40).all()
    assert [Path(p).name for p in tomos["rlnTomoReconstructedTomogram"]] == ["TS_01.mrc", "TS_02.mrc"]


def test_folder_skips_label_maps_and_bad_tomograms_fail_alone(project, tmp_path, capsys):
    assert [t.name for t in read_project(project)] == ["TS_01", "TS_02"]  # TS_0*_classes.mrc are label maps
    src = tmp_path / "src"
    shutil.copytree(project, src)
    (src / "TS_00.mrc").write_bytes((src / "TS_01.mrc").read_bytes()[:2000])  # a truncated tomogram
    code = main(["run", str(src), "--out", str(tmp_path / "out"), "--workers", "0", "-q", "--tomogram", "TS_00",
                 "--tomogram", "TS_01", "--average-classes", "0"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "1 tomogram(s) failed (TS_00)" in err and "TS_00" in err.splitlines()[0]
    assert (tomogram_folder(tmp_path / "out", "TS_01") / "summary.json").is_file()
    assert not (tomogram_folder(tmp_path / "out", "TS_00") / "summary.json").exists()
    assert main(["run", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o2")]) == 2
    assert "project not found" in capsys.readouterr().err


def test_relion_tomograms_star_is_a_project(project, tmp_path):
    star = tmp_path / "tomograms.star"
    shutil.copy(project / "TS_01.mrc", tmp_path / "rec_TS_01.mrc")
    star.write_text("data_global\n\nloop_\n_rlnTomoName #1\n_rlnTomoSizeX #2\n_rlnTomoSizeY #3\n_rlnTomoSizeZ #4\n"
                    "_rlnTomoTiltSeriesPixelSize #5\n_rlnVoltage #6\n_rlnSphericalAberration #7\n_rlnAmplitudeContrast #8\n"
                    "TS_01.tomostar 96 96 40 10.0 200 2.7 0.07\n")  # fmt: skip
    (tomo,) = read_project(star)
    assert tomo.name == "TS_01" and tomo.path == tmp_path / "rec_TS_01.mrc" and tomo.files == (star,)
    summary = run_tomogram(tomo, tmp_path / "out", ProjectConfig(average_classes=0, top_n=5, polarity="bright"), threads=1)
    acq = summary["acquisition"]
    assert acq["voltage_kv"] == 200 and acq["cs_mm"] == 2.7 and f"{star}:TS_01.tomostar" in acq["sources"]
    assert summary["picks"] == 5


def test_copick_project_write_back(project, tmp_path):
    copick = pytest.importorskip("copick")
    (tmp_path / "overlay").mkdir()
    objects = [{"name": n, "is_particle": True, "label": i + 1, "radius": 80.0} for i, n in enumerate(("3j9i", "4v4r", "1bxn", "6utj"))]
    objects.append({"name": "ribosome", "is_particle": True, "label": 9, "radius": 120.0})
    config = {"name": "t", "version": "1.0.0", "config_type": "filesystem", "pickable_objects": objects,
              "overlay_root": f"local://{tmp_path}/overlay", "overlay_fs_args": {"auto_mkdir": True}}  # fmt: skip
    (tmp_path / "copick.json").write_text(json.dumps(config))
    root = copick.from_file(str(tmp_path / "copick.json"))
    vol = read_mrc(project / "TS_01.mrc")
    root.new_run("TS_01").new_voxel_spacing(10.0).new_tomogram("wbp").from_numpy(vol.data)
    out = tmp_path / "out"
    assert main(["run", str(tmp_path / "copick.json"), "--out", str(out), "--workers", "0", "-q", "--top-n", "14",
                 "--average-min-particles", "2", "--average-iterations", "1", "--copick-object", "4v7r=ribosome"]) == 0  # fmt: skip
    summary = json.loads((tomogram_folder(out, "TS_01") / "summary.json").read_text())
    assert any("tilt range" in w for w in summary["warnings"]), summary["warnings"]  # a copick tomogram has no tilt metadata
    predicted = read_particles(tomogram_folder(out, "TS_01") / "particles.star")  # classes and refined poses
    frame = predicted.particles
    assert frame["cmAveraged"].sum() >= 2  # (--average-min-particles) the averaged class's picks carry the orientations the averaging found
    names = frame["rlnClassName"].astype(str).replace({"4v7r": "ribosome"}).to_numpy()
    origins = frame[["rlnOriginXAngst", "rlnOriginYAngst", "rlnOriginZAngst"]].to_numpy(float)
    centres_a = coordinates_xyz_voxels(predicted) * 10.0 - origins  # RELION: centre = coordinate - origin
    matrices = euler_zyz_to_matrix(eulers_zyz(predicted))
    fresh = copick.from_file(str(tmp_path / "copick.json"))
    written = 0
    for picks in fresh.get_run("TS_01").get_picks(user_id="cryomine"):
        points, transforms = picks.numpy()
        sel = np.flatnonzero(names == picks.pickable_object_name)
        got = points + transforms[:, :3, 3]
        order = [int(np.argmin(np.linalg.norm(centres_a[sel] - p, axis=1))) for p in got]
        np.testing.assert_allclose(got, centres_a[sel][order], atol=1e-4)
        np.testing.assert_allclose(transforms[:, :3, :3], matrices[sel][order], atol=1e-6)
        written += len(points)
    known = {o["name"] for o in objects} | {"4v7r"}
    assert written == int(np.isin(predicted.particles["rlnClassName"].astype(str), list(known)).sum()) > 0
    segs = {seg.name: seg.numpy() for seg in fresh.get_run("TS_01").get_segmentations(user_id="cryomine")}
    assert sorted(segs) == ["cryomine-atlas", "cryomine-dsmnet"]
    summary = json.loads((tomogram_folder(out, "TS_01") / "summary.json").read_text())
    labels = read_mrc(tomogram_folder(out, "TS_01") / "segmentation_labels.mrc").data.astype(int)
    copick_label = {o["name"]: o["label"] for o in objects}
    for k, cls in enumerate(summary["atlas_classes"]):  # each class's voxels carry its copick object's label
        obj = {"4v7r": "ribosome"}.get(cls, cls)
        expected = copick_label.get(obj, 0)
        assert (segs["cryomine-dsmnet"][labels == k + 1] == expected).all()
    assert segs["cryomine-dsmnet"].shape == vol.data.shape and segs["cryomine-dsmnet"].max() > 0


def test_napari_layers_of_a_project_run(dask_run):
    out, _ = dask_run
    layers = layer_data(out)
    kinds = (("", "image"), (" masks", "labels"), (" atlas", "labels"), (" picks", "points"))
    assert [(kw["name"], kind) for _, kw, kind in layers] == [(f"{t}{suffix}", kind) for t in ("TS_01", "TS_02") for suffix, kind in kinds]
    assert [kw["visible"] for _, kw, _ in layers] == [True, True, False, True] + [False] * 4
    image, labels, _, points = layers[:4]
    predicted = read_particles(tomogram_folder(out, "TS_01") / "predict" / "predictions.star")
    np.testing.assert_allclose(points[0], coordinates_xyz_voxels(predicted)[:, ::-1])
    assert image[0].shape == labels[0].shape == (40, 96, 96) and image[1]["scale"] == (10.0, 10.0, 10.0)
    atlas = labels[1]["metadata"]["classes"]
    assert set(np.unique(labels[0])) - {0} <= set(atlas) and len(atlas) == len(set(points[1]["features"]["class"]))
    for cls, colour in zip(points[1]["features"]["class"], points[1]["face_color"]):  # one colour per class in both layers
        label = next(k for k, c in atlas.items() if c == cls)
        assert tuple(colour) == tuple(labels[1]["colormap"][label])
    assert get_reader(str(out)) is not None and get_reader(str(out / "tomograms")) is None
    hidden = layers[4][0]  # the other tomograms are read when first shown
    assert not isinstance(hidden, np.ndarray) and hidden.shape == (40, 96, 96)
    source = json.loads((tomogram_folder(out, "TS_02") / "summary.json").read_text())["tomogram"]["path"]
    np.testing.assert_array_equal(np.asarray(hidden), read_mrc(source).data)


def test_napari_opens_a_run_through_the_plugin_and_renders_headless(dask_run, tmp_path):
    pytest.importorskip("napari")
    pytest.importorskip("PyQt5")
    iio = pytest.importorskip("imageio.v3")
    if shutil.which("xvfb-run") is None:
        pytest.skip("xvfb-run is missing (scripts/install-test-deps.sh installs it with apt-get)")
    out, _ = dask_run
    png = tmp_path / "shot.png"
    script = Path(__file__).resolve().parents[1] / "scripts" / "napari_screenshot.py"
    proc = subprocess.run(["xvfb-run", "-a", "-s", "-screen 0 1280x1024x24", sys.executable, str(script), str(out), str(png),
                           "--size", "800,600"], capture_output=True, text=True, timeout=240)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [(x["name"], x["type"]) for x in info["layers"][:4]] == [("TS_01", "image"), ("TS_01 masks", "labels"), ("TS_01 atlas", "labels"),
                                                                    ("TS_01 picks", "points")]  # fmt: skip
    n_picks = len(read_particles(tomogram_folder(out, "TS_01") / "predict" / "predictions.star").particles)
    assert info["layers"][3]["n"] == n_picks
    shot = iio.imread(png)[..., :3].astype(float)
    assert shot.shape[0] > 100 and shot.std() > 10  # not blank
    colours = {tuple(np.round(255 * np.array(c[:3]))) for c in layer_data(out)[3][1]["face_color"]}
    hits = [int((np.abs(shot - np.array(c)).max(axis=-1) < 40).sum()) for c in colours]  # the picks' class colours are drawn
    assert max(hits) > 20, hits


def test_segmentation_is_dsmnets_masks_pasted_at_the_picks(dask_run):
    folder = tomogram_folder(dask_run[0], "TS_01")
    summary = json.loads((folder / "summary.json").read_text())
    labels = read_mrc(folder / "segmentation_labels.mrc").data
    table = read_particles(folder / "predict" / "predictions.star")
    centres = np.rint(coordinates_xyz_voxels(table)[:, ::-1]).astype(int)
    checked = 0
    for i, (centre, mask_file, cls) in enumerate(zip(centres, table.particles["cmMaskFile"], table.particles["rlnClassName"])):
        mask = read_mrc(folder / "predict" / mask_file).data
        later = centres[i + 1:]  # later picks overwrite earlier ones: check voxels no later box covers
        if mask[20, 20, 20] > 0.5 and not (np.abs(later - centre).max(axis=1) < 21).any():
            assert labels[tuple(centre)] == summary["atlas_classes"].index(cls) + 1
            checked += 1
    assert checked >= 1
    assert set(np.unique(labels).astype(int)) <= set(range(len(summary["atlas_classes"]) + 1))


def test_an_existing_dask_cluster_through_its_scheduler_address(project, dask_run, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        out = tmp_path / "out"
        result = run_project(project, out, CONFIG, BatchOptions(scheduler=cluster.scheduler_address, threads=1, progress=False),
                             only=("TS_02",))  # fmt: skip
        assert result.done == ["TS_02"] and not result.failed
    _same_tomogram_outputs(tomogram_folder(out, "TS_02"), tomogram_folder(dask_run[0], "TS_02"))
    with pytest.raises(InputError, match="--scheduler: cannot reach the Dask scheduler"):
        run_project(project, tmp_path / "o2", CONFIG, BatchOptions(scheduler="tcp://127.0.0.1:9", progress=False))


def test_project_report_renders_in_chromium(browser, dask_run):  # noqa: F811  (the fixture imported above)
    report = dask_run[0] / "report.html"
    images, logs, resources = _render(browser, report)
    assert len(images) == report.read_text().count("<img ") >= 8  # per tomogram picks, atlas, t-SNE; averages
    assert all(i["complete"] and i["width"] > 0 for i in images), [i["alt"] for i in images]
    assert not [e["message"] for e in logs if e["level"] == "SEVERE"]
    assert all(r.startswith("data:") for r in resources)


def test_learned_picks_feed_the_pipeline(project, tmp_path):
    tomo = read_project(project)[0]
    summary = run_tomogram(tomo, tmp_path / "out", ProjectConfig(pick_method="learned", average_classes=0), threads=1)
    picks = read_particles(tmp_path / "out" / "picks.star")
    predicted = read_particles(tmp_path / "out" / "particles.star")
    assert summary["picks"] == len(picks.particles) == len(predicted.particles) >= 1
    assert set(picks.particles["rlnTomoName"]) == {"TS_01"} and picks.particles["rlnClassName"].notna().all()  # the picker's classes
    np.testing.assert_allclose(coordinates_xyz_voxels(predicted), coordinates_xyz_voxels(picks), atol=1e-4)  # float32 positions


def test_more_local_workers_than_memory_allows_are_refused(project, tmp_path, monkeypatch):
    monkeypatch.setattr(resources, "available_memory_bytes", lambda: int(2e9))
    with pytest.raises(InputError, match="--workers: 2 local Dask workers .* needs 2.2 GiB of memory"):
        run_project(project, tmp_path / "out", CONFIG, BatchOptions(workers=8, progress=False))  # 2 tomograms: 2 workers
    assert not (tmp_path / "out" / "tomograms").exists()  # refused before any tomogram started

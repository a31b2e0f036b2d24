"""copick projects (issue 18, item 1): tomograms read from a local filesystem project, picks written with class,
score and orientation and read back with copick's own API, identical coordinates and orientations."""

from __future__ import annotations

import json

import numpy as np
import pytest

copick = pytest.importorskip("copick")

from cryomine.cli import main  # noqa: E402
from cryomine.errors import InputError  # noqa: E402
from cryomine.geometry.euler import euler_zyz_to_matrix  # noqa: E402
from cryomine.io import read_mrc, read_omezarr  # noqa: E402
from cryomine.io.copick_project import (  # noqa: E402
    open_project,
    read_project_picks,
    read_project_tomogram,
    write_project_picks,
    write_project_segmentation,
)
from cryomine.io.star import coordinates_xyz_voxels, eulers_zyz, read_particles  # noqa: E402


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    d = tmp_path_factory.mktemp("copick")
    assert main(["simulate", "tomogram", str(d / "t.mrc"), "--shape", "24,48,40", "--particles", "6",
                 "--structures", "1bxn,3gl1", "--seed", "5", "--snr", "1"]) == 0  # fmt: skip
    (d / "overlay").mkdir()
    (d / "static").mkdir()
    config = {"name": "test", "version": "1.0.0", "config_type": "filesystem",
              "pickable_objects": [{"name": "1bxn", "is_particle": True, "label": 1, "radius": 60.0},
                                   {"name": "3gl1", "is_particle": True, "label": 2, "radius": 40.0}],
              "overlay_root": f"local://{d}/overlay", "static_root": f"local://{d}/static",
              "overlay_fs_args": {"auto_mkdir": True}, "static_fs_args": {"auto_mkdir": True}}  # fmt: skip
    (d / "copick.json").write_text(json.dumps(config))
    root = copick.from_file(str(d / "copick.json"))
    vol = read_mrc(d / "t.mrc")
    root.new_run("TS_001").new_voxel_spacing(vol.voxel_size_a).new_tomogram("wbp").from_numpy(vol.data)
    return d, vol


def test_tomograms_are_read_at_every_level(project):
    d, vol = project
    root = open_project(d / "copick.json")
    got = read_project_tomogram(root, "TS_001", vol.voxel_size_a, "wbp")
    np.testing.assert_array_equal(got.data, vol.data)
    assert got.voxel_size_a == vol.voxel_size_a
    store = d / "overlay" / "ExperimentRuns" / "TS_001" / "VoxelSpacing10.000" / "wbp.zarr"
    assert read_project_tomogram(root, "TS_001", 10.0, "wbp", level="1").voxel_size_a == 20.0
    np.testing.assert_array_equal(read_omezarr(store).data, vol.data)  # copick's own pyramid, read as OME-Zarr
    assert read_omezarr(store / "1").voxel_size_a == pytest.approx(20.0)
    with pytest.raises(InputError, match="no run 'TS_9'"):
        read_project_tomogram(root, "TS_9", 10.0, "wbp")
    with pytest.raises(InputError, match="no 'denoised' tomogram at 10 Å \\(has: wbp\\)"):
        read_project_tomogram(root, "TS_001", 10.0, "denoised")


def test_picks_round_trip_through_copicks_own_api(project):
    d, vol = project
    table = read_particles(d / "t.star")  # the true particles: classes 1bxn, 3gl1, orientations
    table.particles["rlnAutopickFigureOfMerit"] = np.linspace(0.5, 0.9, len(table.particles))
    root = open_project(d / "copick.json")
    counts = write_project_picks(root, "TS_001", table, vol.voxel_size_a, session_id="7")
    names = table.particles["rlnClassName"].to_numpy()
    assert counts == {n: int((names == n).sum()) for n in ("1bxn", "3gl1")}

    fresh = copick.from_file(str(d / "copick.json"))  # copick itself, from the files
    for name in counts:
        (picks,) = fresh.get_run("TS_001").get_picks(object_name=name, user_id="cryomine", session_id="7")
        points, transforms = picks.numpy()
        sel = names == name
        np.testing.assert_allclose(points + transforms[:, :3, 3], coordinates_xyz_voxels(table)[sel] * vol.voxel_size_a, atol=1e-6)
        np.testing.assert_allclose(transforms[:, :3, :3], euler_zyz_to_matrix(eulers_zyz(table)[sel]), atol=1e-9)
        np.testing.assert_allclose(picks.scores(), table.particles["rlnAutopickFigureOfMerit"].to_numpy()[sel])

    back = read_project_picks(open_project(d / "copick.json"), "TS_001", vol.voxel_size_a, user_id="cryomine", session_id="7")
    order = np.lexsort(coordinates_xyz_voxels(table).T)
    back_order = np.lexsort(coordinates_xyz_voxels(back).T)
    np.testing.assert_allclose(coordinates_xyz_voxels(back)[back_order], coordinates_xyz_voxels(table)[order], atol=1e-6)
    np.testing.assert_allclose(euler_zyz_to_matrix(eulers_zyz(back))[back_order], euler_zyz_to_matrix(eulers_zyz(table))[order], atol=1e-8)
    assert list(back.particles["rlnClassName"].to_numpy()[back_order]) == list(names[order])


def test_bad_projects_and_classes_are_refused(project, tmp_path):
    d, vol = project
    with pytest.raises(InputError, match="copick project config not found"):
        open_project(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InputError, match="not a readable copick project config"):
        open_project(tmp_path / "bad.json")
    table = read_particles(d / "t.star")
    with pytest.raises(InputError, match="class\\(es\\) ribosome are not pickable objects"):
        write_project_picks(open_project(d / "copick.json"), "TS_001", table, 10.0, object_name="ribosome")


def test_cli_export_then_import_gives_the_same_picks(project, tmp_path, capsys):
    d, vol = project
    cfg = str(d / "copick.json")
    assert main(["copick", "export", str(d / "t.star"), "--config", cfg, "--run", "TS_001", "--voxel-size", "10",
                 "--session", "cli"]) == 0  # fmt: skip
    assert main(["copick", "import", "--config", cfg, "--run", "TS_001", "--voxel-size", "10", "--session", "cli",
                 "--out", str(tmp_path / "back.star")]) == 0  # fmt: skip
    a, b = read_particles(d / "t.star"), read_particles(tmp_path / "back.star")
    ka, kb = np.lexsort(coordinates_xyz_voxels(a).T), np.lexsort(coordinates_xyz_voxels(b).T)
    np.testing.assert_allclose(coordinates_xyz_voxels(b)[kb], coordinates_xyz_voxels(a)[ka], atol=1e-5)
    np.testing.assert_allclose(euler_zyz_to_matrix(eulers_zyz(b))[kb], euler_zyz_to_matrix(eulers_zyz(a))[ka], atol=1e-6)
    capsys.readouterr()
    assert main(["copick", "import", "--config", cfg, "--run", "nope", "--voxel-size", "10", "--out", str(tmp_path / "x.star")]) == 2
    assert "error: --run: no run 'nope' in the copick project" in capsys.readouterr().err


def test_class_map_becomes_a_copick_multilabel_segmentation(project):
    d, vol = project
    labels = read_mrc(d / "t_classes.mrc").data.astype(np.int16)  # 0 background, 1 1bxn, 2 3gl1, 3 membrane
    names = {int(k): v for k, v in json.loads((d / "t.json").read_text())["class_map_labels"].items()}
    counts = write_project_segmentation(open_project(d / "copick.json"), "TS_001", labels, names, vol.voxel_size_a, session_id="3")
    (seg,) = copick.from_file(str(d / "copick.json")).get_run("TS_001").get_segmentations(user_id="cryomine", session_id="3", is_multilabel=True)
    got = seg.numpy()
    objects = {"1bxn": 1, "3gl1": 2}  # the project's labels
    for cls, lab in objects.items():
        cryomine_label = next(k for k, v in names.items() if v == cls)
        np.testing.assert_array_equal(got == lab, labels == cryomine_label)
        assert counts[cls] == int((labels == cryomine_label).sum()) > 0
    assert set(np.unique(got)) <= {0, 1, 2}  # membranes are not objects of this project: background

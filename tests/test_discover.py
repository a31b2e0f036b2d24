"""Discovery: k-means recovers planted clusters, held-out scores, baseline invariance, un-rotation by the true pose,
``cryomine discover`` end to end on a tiny dataset with a class held out of training, and bad input."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile
import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from conftest import reference_density
from cryomine.cli import main
from cryomine.data.normalise import normalise
from cryomine.discover import DiscoverConfig, class_score, clustering_scores, kmeans, purity, tsne_2d
from cryomine.discover.averages import compare_to_truth, fsc_summary, unrotate
from cryomine.discover.baseline import RadialFeaturizer, baseline_features, reduce_features
from cryomine.discover.features import extract_outputs
from cryomine.errors import InputError
from cryomine.evaluate.fsc import fsc
from cryomine.geometry import euler_zyz_to_matrix, place_in_box, random_eulers_zyz, rotate_volume, rotate_volumes, xyz_to_zyx_matrix
from cryomine.io.subtomo_h5 import create_dataset, read_header, read_rows, write_rows
from cryomine.train.runfolder import load_run

TINY = ["--base-channels", "4", "--fc-units", "16"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _blobs(sizes: list[int], dim: int = 12, spread: float = 12.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, spread, size=(len(sizes), dim))
    x = np.concatenate([c + rng.normal(size=(n, dim)) for c, n in zip(centres, sizes)])
    y = np.repeat(np.arange(len(sizes)), sizes)
    perm = rng.permutation(len(y))
    return x[perm], y[perm]


def test_kmeans_recovers_planted_clusters_numbered_by_size() -> None:
    x, y = _blobs([40, 25, 15, 8])
    labels = kmeans(x, 4, seed=3)
    assert purity(labels, y) == 1.0
    assert clustering_scores(labels, y)["adjusted_rand_index"] == pytest.approx(1.0)
    assert list(np.bincount(labels)) == [40, 25, 15, 8]  # cluster 0 is the largest
    assert np.array_equal(kmeans(x, 4, seed=3), labels)  # seeded: deterministic
    reduced = reduce_features(x, n_components=3)
    assert reduced.shape == (len(y), 3) and purity(kmeans(reduced, 4), y) == 1.0
    idx, coords = tsne_2d(x, seed=0, max_points=60)
    assert idx.shape == (60,) and len(np.unique(idx)) == 60 and coords.shape == (60, 2)
    assert purity(kmeans(coords, 4, seed=0), y[idx]) == 1.0  # the 2-D map keeps the clusters apart


def test_purity_and_held_out_scores_on_a_hand_made_assignment() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2])
    classes = np.array([0, 0, 0, 1, 1, 1, 3, 3, 3, 3, 2, -1])
    # majorities: cluster 0 -> class 0 (3 of 4), cluster 1 -> class 1 (2 of 3), cluster 2 -> class 3 (3 of 4 known)
    assert purity(labels, classes) == pytest.approx((3 + 2 + 3) / 11)
    held = class_score(labels, classes, 3)  # 4 rows of class 3: 1 in cluster 1, 3 in cluster 2 (of 5 rows)
    assert (held.cluster, held.n, held.cluster_size) == (2, 4, 5)
    assert held.recall == pytest.approx(3 / 4) and held.precision == pytest.approx(3 / 5)
    scores = clustering_scores(labels, classes, {3: "new", 1: "other"})
    assert scores["held_out"]["new"]["recall"] == pytest.approx(0.75)
    assert scores["held_out"]["other"]["cluster"] == 1 and scores["held_out"]["other"]["precision"] == pytest.approx(2 / 3)
    with pytest.raises(InputError, match="no subtomograms"):
        class_score(labels, classes, 7)


def _asymmetric_volume(size: int, offsets: list[tuple[float, float, float]], seed: int = 0, noise: float = 0.02) -> np.ndarray:
    """Sum of Gaussian blobs at ``offsets`` (z, y, x voxels from the centre ``size // 2``) plus a little noise."""
    grid = np.stack(np.meshgrid(*(np.arange(size) - size // 2 for _ in range(3)), indexing="ij"), axis=-1)
    vol = sum(np.exp(-((grid - np.array(o)) ** 2).sum(-1) / 3.0) for o in offsets)
    return (vol + noise * np.random.default_rng(seed).standard_normal(vol.shape)).astype(np.float32)


def test_baseline_features_are_rotation_invariant() -> None:
    shape_a = [(3, 0, 0), (0, 4, 1), (-2, -2, 3)]
    shape_b = [(0, 0, 0), (0, 0, 5), (0, 0, -5)]
    feat = RadialFeaturizer((17, 17, 17))
    a = _asymmetric_volume(17, shape_a)
    b = _asymmetric_volume(17, shape_b)
    rotated = np.rot90(a, 1, axes=(1, 2)).copy()  # odd box: an exact rotation about the centre voxel
    fa, fr, fb = feat(np.stack([a, rotated, b]))
    assert np.linalg.norm(fa - fr) < 1e-4 * np.linalg.norm(fa)
    assert np.linalg.norm(fa - fb) > 0.1 * np.linalg.norm(fa)
    # even box, a 90-degree rotation about y through voxel n // 2 (one face shifts out): still nearly invariant
    feat16 = RadialFeaturizer((16, 16, 16))
    c = _asymmetric_volume(16, shape_a, seed=1)
    c_rot = rotate_volume(c, euler_zyz_to_matrix([0.0, 90.0, 0.0]))
    d = _asymmetric_volume(16, shape_b, seed=1)
    fc, fcr, fd = feat16(np.stack([c, c_rot, d]))
    assert np.linalg.norm(fc - fcr) < 0.1 * np.linalg.norm(fc - fd)


def test_unrotate_inverts_the_true_pose() -> None:
    ref = _asymmetric_volume(20, [(3, 0, 0), (0, 4, 1), (-2, -2, 3)], noise=0.0)
    rng = np.random.default_rng(4)
    eulers = random_eulers_zyz(3, rng)
    shifts = rng.uniform(-2, 2, size=(3, 3))
    mats = torch.from_numpy(euler_zyz_to_matrix(eulers).astype(np.float32))
    posed = rotate_volumes(torch.from_numpy(np.repeat(ref[None], 3, 0)), mats, torch.from_numpy(shifts.astype(np.float32))).numpy()
    back = unrotate(posed, eulers, shifts)
    for vol, orig in zip(back, posed):
        assert np.corrcoef(vol.ravel(), ref.ravel())[0, 1] > 0.98
        assert np.corrcoef(orig.ravel(), ref.ravel())[0, 1] < 0.9
    _, same = compare_to_truth(ref, ref, 10.0)
    assert same["fsc_sum"] == pytest.approx(10.0) and same["resolution_fsc05_a"] == pytest.approx(20.0)
    cube = np.arange(27, dtype=np.float32).reshape(3, 3, 3)
    boxed = place_in_box(cube, (6, 5, 2))  # centre voxel 1 of the cube lands on (3, 2, 1)
    assert boxed[3, 2, 1] == cube[1, 1, 1] and boxed.sum() == cube[:, :, :2].sum()


def test_discover_config_validation() -> None:
    for bad in ({"k": 1}, {"k": 2.5}, {"seed": -1}, {"tsne_perplexity": 0.0}, {"batch_size": 0}):
        with pytest.raises(InputError):
            DiscoverConfig(**bad)
    assert DiscoverConfig().resolve_k(21, 3205) == 22
    with pytest.raises(InputError, match="more than"):
        DiscoverConfig(k=50).resolve_k(3, 24)


@pytest.fixture(scope="module")
def held_out_run(blob_dataset_factory: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny DSM-Net trained on 3 of 4 blob classes (``disc`` held out) and its dataset."""
    dataset = blob_dataset_factory("discover_blobs", n_per_class=8, size=16, n_classes=4, noise=0.3, seed=5)
    run = tmp_path_factory.mktemp("discover") / "run"
    code = main(["train", str(dataset), "--out", str(run), "--epochs", "2", "--batch-size", "8", "--seed", "1",
                 "--exclude-class", "disc", "--num-threads", "1", *TINY])
    assert code == 0
    return run, dataset


def _unrotate_each(volumes: np.ndarray, eulers: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Reference-frame copies of posed volumes, one :func:`rotate_volume` (scipy) call per row: the inverse of
    ``p = A r + s`` is the rotation ``A^T`` followed by the shift ``-A^T s`` (independent of ``unrotate``'s torch path)."""
    out = []
    for vol, e, s in zip(volumes, eulers, shifts):
        a = euler_zyz_to_matrix(e)
        out.append(rotate_volume(vol, a.T, shift_zyx=-xyz_to_zyx_matrix(a.T) @ np.asarray(s, np.float64)))
    return np.stack(out)


def _fsc_approx(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-4), key


def test_discover_cli_end_to_end(held_out_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, dataset = held_out_run
    out = tmp_path / "disc"
    capsys.readouterr()
    assert main(["discover", str(run), str(dataset), "--out", str(out), "--seed", "2"]) == 0
    text = capsys.readouterr().out
    assert "32 subtomograms in 4 clusters" in text and "held out disc" in text
    summary = json.loads((out / "summary.json").read_text())
    k = summary["k"]
    assert k == 4 and summary["held_out_classes"] == ["disc"] and summary["excluded_in_training"] == ["disc"]
    table = pd.read_csv(out / "assignments.csv")
    assert list(table["row"]) == list(range(32)) and set(table["cluster"]) == set(range(k))
    assert {"baseline_cluster", "predicted_class", "true_class", "held_out"} <= set(table.columns)
    assert set(table["predicted_class"]) <= {"sphere", "rod", "two_spheres"}  # the run never saw 'disc'

    # Independent references. Truth of each class: the mean of its clean target densities brought back into the
    # reference frame with the stored poses (scipy path); it must be the unrotated shape itself.
    header = read_header(dataset)
    names = header.class_names
    rows = np.arange(32)
    r = read_rows(dataset, ("subtomograms", "target_density", "eulers_zyz", "shifts_zyx", "class_id"), rows)
    classes = r["class_id"].astype(np.int64)
    np.testing.assert_array_equal(table["true_class_id"].to_numpy(), classes)
    truth = {}
    for c, name in enumerate(names):
        sel = classes == c
        truth[c] = _unrotate_each(r["target_density"][sel], r["eulers_zyz"][sel], r["shifts_zyx"][sel]).mean(0)
        assert np.corrcoef(truth[c].ravel(), reference_density(name, 16).ravel())[0, 1] > 0.95, name
    boxes = normalise(r["subtomograms"])  # the network's (and the averages') input
    boxes_ref = _unrotate_each(boxes, r["eulers_zyz"], r["shifts_zyx"])
    disc = names.index("disc")

    # The ideal clustering (ground-truth labels) and the expected baseline outcome: in the baseline's feature space
    # every row lies nearer its own class centroid than any other (the planted partition is a fixed point of
    # k-means, with a margin: own-centroid distance <= 0.72 x the next), so k-means with k = 4 (10 seeded restarts)
    # is to return exactly the four classes.
    feat = reduce_features(baseline_features(dataset, rows), summary["config"]["baseline_components"], 2)
    centroids = np.stack([feat[classes == c].mean(0) for c in range(len(names))])
    assert np.array_equal(np.linalg.norm(feat[:, None] - centroids[None], axis=-1).argmin(1), classes)
    base = summary["baseline"]
    assert adjusted_rand_score(classes, table["baseline_cluster"]) == pytest.approx(1.0)
    assert base["purity"] == 1.0 and base["adjusted_rand_index"] == pytest.approx(1.0)
    h = base["held_out"]["disc"]
    assert (h["recall"], h["precision"], h["cluster_size"]) == (1.0, 1.0, 8)
    # ... so its held-out FSC is that of the ideal average of the 8 disc rows, which beats both the same rows not
    # un-rotated and the (un-rotated) rows of another class against the disc truth
    ideal = fsc_summary(boxes_ref[classes == disc].mean(0), truth[disc], 10.0)
    _fsc_approx(h["fsc_subtomogram_mean"], ideal)
    box_frame = fsc_summary(boxes[classes == disc].mean(0), truth[disc], 10.0)
    other = fsc_summary(boxes_ref[classes == names.index("sphere")].mean(0), truth[disc], 10.0)
    for wrong in (box_frame, other):
        assert ideal["fsc_sum"] > 2 * wrong["fsc_sum"] and ideal["resolution_fsc05_a"] < wrong["resolution_fsc05_a"]

    # DSM-Net: the written clustering is k-means of the run's own features, the predictions its classifier's
    loaded = load_run(run)
    outs = extract_outputs(loaded, dataset, rows)
    assert np.array_equal(kmeans(outs.features, k, seed=2), table["cluster"].to_numpy())
    assert list(table["predicted_class"]) == [loaded.class_names[p] for p in outs.predicted]
    recovered_ref = _unrotate_each(outs.recovered, r["eulers_zyz"], r["shifts_zyx"])

    # the summary's numbers are those of the written assignments and maps against the independent truth
    for method, column in (("dsmnet", "cluster"), ("baseline", "baseline_cluster")):
        part = summary[method]
        labels = table[column].to_numpy()
        assert part["purity"] == pytest.approx(purity(labels, classes))
        assert part["adjusted_rand_index"] == pytest.approx(adjusted_rand_score(classes, labels))
        assert part["normalized_mutual_info"] == pytest.approx(normalized_mutual_info_score(classes, labels))
        h = part["held_out"]["disc"]
        members = labels == h["cluster"]
        assert h["recall"] == pytest.approx((classes[members] == disc).sum() / 8)
        assert h["precision"] == pytest.approx((classes[members] == disc).mean())
        _fsc_approx(h["fsc_subtomogram_mean"], fsc_summary(boxes_ref[members].mean(0), truth[disc], 10.0))
    blocks = starfile.read(out / "assignments.star", always_dict=True)
    star = blocks["particles"]
    assert blocks["optics"]["rlnImagePixelSize"].tolist() == [10.0]  # the dataset's voxel size
    assert len(star) == 32 and np.array_equal(star["rlnClassNumber"].to_numpy(), table["cluster"].to_numpy() + 1)
    assert (out / "tsne.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    held_cluster = summary["dsmnet"]["held_out"]["disc"]["cluster"]
    for c in range(k):
        members = table["cluster"].to_numpy() == c
        with mrcfile.open(out / f"cluster_{c}.mrc") as m:
            assert m.data.shape == (16, 16, 16) and float(m.voxel_size.x) == pytest.approx(10.0)
            cluster_map = m.data.astype(np.float32)
        # the map is the mean recovered density of the cluster's rows, in the reference frame
        np.testing.assert_allclose(cluster_map, recovered_ref[members].mean(0), atol=1e-4 * np.abs(cluster_map).max())
        assert (out / f"cluster_{c}.png").stat().st_size > 1000
        entry = summary["dsmnet"]["clusters"][c]
        majority = int(np.bincount(classes[members], minlength=len(names)).argmax())
        assert entry["size"] == int(members.sum()) and entry["majority_class_id"] == majority
        _fsc_approx(entry["fsc"], fsc_summary(cluster_map, truth[majority], 10.0))
        _fsc_approx(entry["fsc_subtomogram_mean"], fsc_summary(boxes_ref[members].mean(0), truth[majority], 10.0))
        curve = pd.read_csv(out / f"cluster_{c}_fsc.csv")
        np.testing.assert_allclose(curve["fsc"].to_numpy(), fsc(cluster_map, truth[majority], voxel_size_a=10.0).fsc,
                                   atol=1e-4)
        if c == held_cluster:
            _fsc_approx(summary["dsmnet"]["held_out"]["disc"]["fsc"], fsc_summary(cluster_map, truth[disc], 10.0))
    assert summary["truth_source"]["disc"] == "target_density" and summary["frame"].startswith("reference frame")


def test_discover_no_baseline_and_explicit_k(held_out_run: tuple[Path, Path], tmp_path: Path) -> None:
    run, dataset = held_out_run
    out = tmp_path / "k2"
    assert main(["discover", str(run), str(dataset), "--out", str(out), "--k", "3", "--no-baseline"]) == 0
    assert (out / "cluster_2.mrc").is_file()
    (out / "notes.txt").write_text("mine")
    # a second run with a smaller k into the same folder leaves no cluster of the first behind, other files alone
    assert main(["discover", str(run), str(dataset), "--out", str(out), "--k", "2", "--no-baseline"]) == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert not list(out.glob("cluster_2*"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["k"] == 2 and "baseline" not in summary
    assert "baseline_cluster" not in pd.read_csv(out / "assignments.csv").columns
    assert sorted(p.name for p in out.glob("cluster_*.mrc")) == ["cluster_0.mrc", "cluster_1.mrc"]


def test_discover_without_ground_truth(held_out_run: tuple[Path, Path], tmp_path: Path) -> None:
    run, dataset = held_out_run
    header = read_header(dataset)
    plain = tmp_path / "unlabelled.h5"
    create_dataset(plain, n=12, size=16, voxel_size_a=header.voxel_size_a, class_names=header.class_names, config={},
                   cryomine_version="test", has_ground_truth=False)
    write_rows(plain, 0, {"subtomograms": read_rows(dataset, ("subtomograms",), np.arange(12))["subtomograms"]})
    out = tmp_path / "plain"
    assert main(["discover", str(run), str(plain), "--out", str(out), "--k", "3"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert not summary["ground_truth"] and summary["held_out_classes"] == [] and "purity" not in summary["dsmnet"]
    assert summary["frame"].startswith("box frame") and not list(out.glob("*_fsc.csv"))
    table = pd.read_csv(out / "assignments.csv")
    assert len(table) == 12 and "true_class" not in table.columns
    assert sum(c["size"] for c in summary["dsmnet"]["clusters"]) == 12 and (out / "tsne.png").is_file()


def test_discover_bad_input_is_one_line(held_out_run: tuple[Path, Path], blob_dataset_factory: Callable[..., Path],
                                        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, dataset = held_out_run
    other_box = blob_dataset_factory("discover_box12", n_per_class=3, size=12, n_classes=4)
    cases = [
        (["--k", "1"], dataset, run, "k must be"),
        (["--k", "33"], dataset, run, "more than the 32"),
        ([], dataset, tmp_path / "no_such_run", "run folder not found"),
        ([], tmp_path / "missing.h5", run, "dataset not found"),
        ([], other_box, run, "box size 12"),
    ]
    for i, (extra, data, run_dir, message) in enumerate(cases):
        out = tmp_path / f"bad{i}"
        capsys.readouterr()
        assert main(["discover", str(run_dir), str(data), "--out", str(out), *extra]) == 2, message
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and message in err and "\n" not in err, err
        assert not out.exists()  # refused before writing anything

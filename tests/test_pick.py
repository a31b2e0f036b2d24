"""Picking library: plant-and-recover template matching and DoG, tiling invariance, peaks, evaluation, extraction,
atlas, and bad input. Small odd-shaped volumes, seeded, coarse angular steps (fast on 2 busy cores)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from cryomine.acquisition.ctf import MicroscopeConfig
from cryomine.errors import InputError
from cryomine.geometry import cut_boxes, euler_zyz_to_matrix, missing_wedge_mask, rotate_volumes, rotation_angle_deg
from cryomine.io import make_particles, write_particles
from cryomine.pick import (
    Candidates,
    DogConfig,
    PeakConfig,
    PointSet,
    TemplateMatchConfig,
    build_atlas,
    evaluate_point_sets,
    match_points,
    match_template,
    pick_dog,
    plan_tiles,
    read_picks,
    select_peaks,
    template_weight,
)
from cryomine.pick.correlate import _fold_orientation
from cryomine.pick.evaluate import evaluate_pick_files
from cryomine.pick.tiles import read_window, tile_bytes


def _asymmetric_template(m: int = 19, sigma: float = 1.6) -> np.ndarray:
    """Four Gaussian blobs of different weights on three different axes (no rotational symmetry), max 1."""
    c = m // 2
    t = np.zeros((m, m, m), np.float32)
    t[c, c, c], t[c, c, c + 5], t[c, c + 4, c], t[c + 3, c - 1, c - 1] = 3.0, 2.0, 1.5, 1.2
    t = ndimage.gaussian_filter(t, sigma)
    return (t / t.max()).astype(np.float32)


def _plant(volume: np.ndarray, template: np.ndarray, centre_zyx, angles_zyz) -> None:
    m, c = template.shape[0], template.shape[0] // 2
    mat = torch.from_numpy(euler_zyz_to_matrix(angles_zyz).astype(np.float32))[None]
    rot = rotate_volumes(torch.from_numpy(template)[None], mat)[0].numpy()
    z, y, x = (int(v) - c for v in centre_zyx)
    volume[z : z + m, y : y + m, x : x + m] += rot


def _wedge_filter(volume: np.ndarray, lo: float = -60.0, hi: float = 60.0) -> np.ndarray:
    mask = missing_wedge_mask(volume.shape, lo, hi, rfft=True)
    return np.fft.irfftn(np.fft.rfftn(volume) * mask, s=volume.shape, axes=(0, 1, 2)).astype(np.float32)


# ---------------------------------------------------------------- template matching


def test_template_matching_recovers_planted_position_and_angle():
    """A template planted at a random rotation into noise, with the missing wedge applied to the whole tomogram,
    is found within one voxel and its orientation within the angular step."""
    rng = np.random.default_rng(3)
    template = _asymmetric_template()
    step = 30.0
    angles = rng.uniform([0, 0, 0], [360, 180, 360])
    vol = 0.1 * rng.standard_normal((29, 35, 32)).astype(np.float32)
    centre = np.array([14, 17, 16])
    _plant(vol, template, centre, angles)
    vol = _wedge_filter(vol)
    config = TemplateMatchConfig(angular_step_deg=step, microscope=None, wedge=True, peaks=PeakConfig(top_n=1))
    res = match_template(vol, template, 10.0, config)
    assert np.abs(res.picks.coords_zyx[0] - centre).max() <= 1.0
    err = rotation_angle_deg(euler_zyz_to_matrix(res.picks.eulers_zyz[0]), euler_zyz_to_matrix(angles))
    assert err <= step, err
    assert res.scores.max() == pytest.approx(res.picks.scores[0])
    far = np.linalg.norm(np.indices(vol.shape) - centre[:, None, None, None], axis=0) > 9
    assert res.picks.scores[0] > 2 * res.scores[far].max()  # far above any background correlation
    # the stored angle index points at the picked orientation
    z, y, x = res.picks.coords_zyx[0].astype(int)
    np.testing.assert_allclose(res.angles_zyz[res.angle_index[z, y, x]], res.picks.eulers_zyz[0])


def test_tiling_gives_the_same_scores_and_peaks_as_one_piece():
    rng = np.random.default_rng(5)
    template = _asymmetric_template(13, 1.0)
    vol = 0.3 * rng.standard_normal((27, 33, 30)).astype(np.float32)
    for centre, ang in (((8, 9, 10), (10, 40, 80)), ((19, 24, 18), (200, 120, 30)), ((13, 25, 7), (0, 0, 0))):
        _plant(vol, template, centre, ang)
    base = dict(angular_step_deg=60.0, microscope=MicroscopeConfig(defocus_um=3.0), peaks=PeakConfig(top_n=5))
    one = match_template(vol, template, 10.0, TemplateMatchConfig(**base))
    tiled = match_template(vol, template, 10.0, TemplateMatchConfig(**base, tile_vox=11, angle_batch=3))
    assert one.n_tiles == 1 and tiled.n_tiles == 3 * 3 * 3
    np.testing.assert_allclose(tiled.scores, one.scores, atol=2e-5)
    np.testing.assert_array_equal(tiled.picks.coords_zyx, one.picks.coords_zyx)
    np.testing.assert_allclose(tiled.picks.eulers_zyz, one.picks.eulers_zyz)


def test_circular_matching_equals_padded_away_from_the_faces():
    rng = np.random.default_rng(6)
    template = _asymmetric_template(13, 1.0)
    vol = 0.3 * rng.standard_normal((30, 32, 27)).astype(np.float32)
    _plant(vol, template, (15, 14, 13), (70, 100, 10))
    base = dict(angular_step_deg=90.0, microscope=None, peaks=PeakConfig(top_n=1))
    padded = match_template(vol, template, 10.0, TemplateMatchConfig(**base))
    circular = match_template(vol, template, 10.0, TemplateMatchConfig(**base, pad_edges=False))
    inner = (slice(13, -13),) * 3
    np.testing.assert_allclose(circular.scores[inner], padded.scores[inner], atol=2e-5)
    np.testing.assert_array_equal(circular.picks.coords_zyx, padded.picks.coords_zyx)
    assert not np.allclose(circular.scores[:2], padded.scores[:2], atol=1e-3)  # the faces differ: wrap vs zeros
    with pytest.raises(InputError, match="tiles need edge padding"):
        TemplateMatchConfig(pad_edges=False, tile_vox=10)


def test_custom_ball_mask_matches_the_spherical_fast_path():
    """The per-orientation (rotated custom mask) path with a ball equals the precomputed spherical path."""
    from cryomine.pick import spherical_mask

    rng = np.random.default_rng(8)
    template = _asymmetric_template(13, 1.0)
    vol = 0.2 * rng.standard_normal((22, 25, 23)).astype(np.float32)
    _plant(vol, template, (11, 12, 12), (30, 60, 90))
    cfg = TemplateMatchConfig(angular_step_deg=90.0, microscope=None, wedge=False, mask_radius_vox=5.5, peaks=PeakConfig(top_n=1))
    fast = match_template(vol, template, 10.0, cfg)
    custom = match_template(vol, template, 10.0, cfg, mask=spherical_mask(13, 5.5))
    np.testing.assert_array_equal(custom.picks.coords_zyx, fast.picks.coords_zyx)
    assert np.corrcoef(custom.scores.ravel(), fast.scores.ravel())[0, 1] > 0.99


def test_template_weight_is_wedge_times_minus_ctf():
    m = 16
    cfg = TemplateMatchConfig(microscope=MicroscopeConfig(defocus_um=4.0))
    w = template_weight(m, 10.0, cfg)
    wedge = missing_wedge_mask((m, m, m), -60, 60, rfft=True)
    assert w.shape == (m, m, m // 2 + 1)
    assert np.all(w[~wedge] == 0) and np.any(w[wedge] != 0)
    assert w[0, 0, 0] == pytest.approx(0.07, rel=1e-5)  # -CTF(0) = amplitude contrast: protein-bright correlation > 0
    assert np.all(template_weight(m, 10.0, TemplateMatchConfig(microscope=None, wedge=False)) == 1)


@pytest.mark.parametrize("with_inv, with_within", [(False, False), (True, False), (True, True), (False, True)])
def test_compiled_scan_update_equals_the_array_operations(with_inv, with_within):
    """The one-pass running maximum + core moments equals compare / maximum / masked fill / sum / dot on strided
    views of an odd-shaped region (ties keep the earlier orientation)."""
    rng = np.random.default_rng(5)
    region, lo, hi = (9, 14, 11), np.array([1, 2, 0]), np.array([8, 13, 10])
    core = tuple(slice(a, b) for a, b in zip(lo, hi))
    inv = rng.uniform(0.5, 2.0, size=tuple(hi - lo)).astype(np.float32)
    within = rng.random(tuple(hi - lo)) < 0.6
    best = np.full(region, -np.inf, np.float32)
    idx = np.zeros(region, np.int32)
    ref_best, ref_idx, ref, total = best.copy(), idx.copy(), np.zeros(2), np.zeros(2)
    for k in range(5):
        full = rng.normal(size=(12, 16, 13)).astype(np.float32).round(1)  # rounded: ties happen
        score = full[: region[0], : region[1], : region[2]]
        total += _fold_orientation(score, best, idx, k, lo, hi, inv if with_inv else np.zeros((0, 0, 0), np.float32),
                                within if with_within else np.zeros((0, 0, 0), bool))  # fmt: skip
        better = score > ref_best
        ref_best, ref_idx = np.maximum(ref_best, score), np.where(better, k, ref_idx)
        a = score[core].astype(np.float64) * (inv if with_inv else 1.0)
        a = a[within] if with_within else a
        ref += [a.sum(), (a * a).sum()]
        np.testing.assert_allclose(total, ref, rtol=1e-9)
    np.testing.assert_array_equal(best, ref_best)
    np.testing.assert_array_equal(idx, ref_idx)
    assert len(set(idx.ravel())) > 1


def test_template_larger_than_tomogram_and_bad_steps_raise():
    with pytest.raises(InputError, match="larger than the tomogram"):
        match_template(np.random.default_rng(0).standard_normal((10, 30, 30)), _asymmetric_template(15, 1.0), 10.0)
    for step in (0, -5, float("nan"), 200):
        with pytest.raises(InputError, match="angular"):
            TemplateMatchConfig(angular_step_deg=step)
    with pytest.raises(InputError, match="constant"):
        match_template(np.zeros((20, 20, 20), np.float32), _asymmetric_template(11, 1.0), 10.0)


# ---------------------------------------------------------------- DoG


def test_dog_finds_planted_blobs_of_the_given_radius():
    rng = np.random.default_rng(0)
    shape, r = (36, 58, 51), 4.0
    centres: list[np.ndarray] = []
    while len(centres) < 10:
        p = rng.uniform(6, np.array(shape) - 6)
        if all(np.linalg.norm(p - q) > 4 * r for q in centres):
            centres.append(p)
    zz, yy, xx = np.indices(shape)
    vol = 0.5 * rng.standard_normal(shape).astype(np.float32)
    for p in centres:
        vol += (((zz - p[0]) ** 2 + (yy - p[1]) ** 2 + (xx - p[2]) ** 2) <= r * r).astype(np.float32)
    res = pick_dog(ndimage.gaussian_filter(vol, 0.7), DogConfig(radius_vox=r, peaks=PeakConfig(top_n=10)))
    truth = np.array(centres)
    d = np.linalg.norm(res.picks.coords_zyx[:, None] - truth[None], axis=-1)
    assert len(res.picks) == 10
    assert d.min(axis=0).max() <= 1.5  # every blob found within ~1 voxel of its (sub-voxel) centre
    # automatic threshold: all 10 blobs are far above background
    auto = pick_dog(ndimage.gaussian_filter(vol, 0.7), DogConfig(radius_vox=r))
    assert len(auto.picks) >= 10 and auto.picks.scores[9] > auto.threshold


def test_dog_sigmas_bracket_radius_over_sqrt3():
    s1, s2 = DogConfig(radius_vox=6.0).sigmas_vox
    assert s1 < 6.0 / np.sqrt(3) < s2 and s2 / s1 == pytest.approx(1.6)
    with pytest.raises(InputError, match="radius"):
        DogConfig(radius_vox=0.0)


# ---------------------------------------------------------------- peaks and tiles


def test_select_peaks_greedy_exclusion_top_n_threshold():
    coords = np.array([[0, 0, 0], [0, 0, 3], [0, 0, 6], [10, 0, 0], [10, 0, 5]])
    scores = np.array([5.0, 9.0, 4.0, 1.0, 2.0], np.float32)
    out = select_peaks(Candidates(coords, scores), min_distance_vox=4.0)
    # 9 at x=3 suppresses x=0 and x=6 (distance 3 < 4); (10,0,0) and (10,0,5) are 5 apart: both kept
    np.testing.assert_array_equal(out.coords_zyx, [[0, 0, 3], [10, 0, 5], [10, 0, 0]])
    assert len(select_peaks(Candidates(coords, scores), 4.0, top_n=2)) == 2
    np.testing.assert_array_equal(select_peaks(Candidates(coords, scores), 4.0, threshold=1.5).scores, [9.0, 2.0])
    # exactly min_distance apart is allowed
    assert len(select_peaks(Candidates(coords[[0, 1]], scores[[0, 1]]), 3.0)) == 2


def test_tiles_fit_the_memory_given_for_every_worker_and_the_noise_search():
    shape, m, budget = (60, 200, 180), 21, 60 * 2**20
    plans = {(w, n): plan_tiles(shape, m, memory_bytes=budget, angle_batch=4, workers=w, noise=n) for w in (1, 2) for n in (False, True)}
    for (w, n), tiles in plans.items():
        assert max(tile_bytes(int(np.prod(t.window_shape_zyx)), 4, w, n) for t in tiles) <= budget
    assert len(plans[1, False]) < len(plans[2, False]) < len(plans[2, True])
    assert tile_bytes(10**6, 4, 2, True) > tile_bytes(10**6, 4, 2) > tile_bytes(10**6, 4, 1) > tile_bytes(10**6, 1, 1)


def test_tiles_partition_the_volume_and_cover_the_correlation_support():
    shape, m = (23, 31, 17), 9
    tiles = plan_tiles(shape, m, core_vox=10)
    count = np.zeros(shape, int)
    for t in tiles:
        count[t.core] += 1
        for r, n, start in zip(t.region, t.window_shape_zyx, t.window_start_zyx):
            assert start == r.start - m // 2 and n >= (r.stop - r.start) + m - 1
    assert np.all(count == 1)
    # automatic: a tiny memory budget forces several tiles
    assert len(plan_tiles((64, 64, 64), 9, memory_bytes=2**22)) > 1
    vol = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    win = read_window(vol, (-2, 5, 10), (6, 4, 12))
    assert np.all(win[:2] == 0) and win[2, 0, 0] == vol[0, 5, 10] and np.all(win[:, :, 7:] == 0)


# ---------------------------------------------------------------- evaluation


def test_evaluate_hand_counted_example():
    """Radius 4 voxels -> hit within 2 voxels. Hand count:
    truth  T0 (0,0,0) A, T1 (0,0,10) A, T2 (0,10,0) B, T3 (20,20,20) B
    picks  P0 (0,0,1) A   -> T0 (d 1)
           P1 (0,0,1.5) A -> would also hit T0, but T0 is taken: FP
           P2 (0,9,0) A   -> hits T2 (d 1) in localisation; class A != B: class-aware FP
           P3 (0,0,11.9) B -> T1 (d 1.9) in localisation; wrong class
           P4 (5,5,5) B   -> nothing: FP
    localisation: TP 3 (T0, T1, T2), FP 2, FN 1 -> P 3/5, R 3/4
    class-aware: A picks {P0,P1,P2} vs A truths {T0,T1}: TP 1; B picks {P3,P4} vs B truths {T2,T3}: TP 0.
    """
    truth = PointSet(np.array([[0, 0, 0], [0, 0, 10], [0, 10, 0], [20, 20, 20]], float), np.array(["A", "A", "B", "B"], object))
    picks = PointSet(np.array([[0, 0, 1], [0, 0, 1.5], [0, 9, 0], [0, 0, 11.9], [5, 5, 5]], float),
                     np.array(["A", "A", "A", "B", "B"], object))  # fmt: skip
    rep = evaluate_point_sets(picks, truth, {"A": 4.0, "B": 4.0})
    loc = rep["localisation"]
    assert (loc["tp"], loc["fp"], loc["fn"]) == (3, 2, 1)
    assert loc["precision"] == pytest.approx(0.6) and loc["recall"] == pytest.approx(0.75)
    assert loc["f1"] == pytest.approx(2 * 0.6 * 0.75 / 1.35)
    cls = rep["localisation_and_class"]
    assert (cls["tp"], cls["fp"], cls["fn"]) == (1, 4, 3)
    a = rep["per_class"]["A"]
    assert a["n_true"] == 2 and a["n_picked"] == 3
    assert a["localisation"]["recall"] == 1.0 and a["localisation"]["precision"] == pytest.approx(2 / 3)
    assert a["localisation_and_class"]["tp"] == 1 and a["localisation_and_class"]["recall"] == 0.5
    b = rep["per_class"]["B"]
    assert b["localisation"]["recall"] == 0.5 and b["localisation_and_class"]["tp"] == 0
    # unclassed picks: no class-aware scores, per-class recall only
    plain = evaluate_point_sets(PointSet(picks.coords_zyx), truth, {"A": 4.0, "B": 4.0})
    assert plain["localisation_and_class"] is None and plain["per_class"]["A"]["localisation"]["precision"] is None


def test_matching_is_one_to_one_and_maximal():
    """Greedy nearest-first could pair P0 with T1 and leave T0 unmatched; the optimum matches both."""
    truth = np.array([[0.0, 0, 0], [0, 0, 2]])
    picks = np.array([[0.0, 0, 1], [0, 0, 3]])
    pi, ti = match_points(picks, truth, np.array([1.5, 1.5]))
    assert sorted(zip(pi.tolist(), ti.tolist())) == [(0, 0), (1, 1)]
    # per-truth distance limits: a far pick only hits the big particle
    pi, ti = match_points(np.array([[0.0, 0, 5]]), np.array([[0.0, 0, 0], [0, 0, 9]]), np.array([6.0, 2.0]))
    assert (pi.tolist(), ti.tolist()) == ([0], [0])


def test_evaluate_files_empty_star_and_radii(tmp_path):
    truth = tmp_path / "truth.star"
    names = {"rlnClassName": np.array(["1bxn", "3j9i"], object)}
    write_particles(truth, make_particles(np.array([[10.0, 20, 30], [40, 50, 60]]), extra=names), pixel_size_a=10.0)
    empty = tmp_path / "empty.star"
    write_particles(empty, make_particles(np.zeros((0, 3))), pixel_size_a=10.0)
    with pytest.raises(InputError, match="no particles"):
        read_picks(empty)
    with pytest.raises(InputError, match="no particles"):
        evaluate_pick_files(empty, truth)
    from cryomine.pick import MatchingConfig

    with pytest.raises(InputError, match="voxel size"):
        evaluate_pick_files(truth, truth)
    rep = evaluate_pick_files(truth, truth, MatchingConfig(voxel_size_a=10.0))
    assert rep["localisation_and_class"]["f1"] == 1.0
    assert rep["radius_vox"]["1bxn"] == pytest.approx(141.4 / 2 / 10, abs=1e-3)


# ---------------------------------------------------------------- extraction and atlas


def test_extract_boxes_centre_and_fill():
    shape = (9, 12, 10)
    vol = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    boxes = cut_boxes(vol, np.array([[4.2, 6, 5], [0, 0, 0]]), 4, fill=-1.0)
    assert boxes.shape == (2, 4, 4, 4)
    assert boxes[0, 2, 2, 2] == vol[4, 6, 5] and boxes[0, 0, 0, 0] == vol[2, 4, 3]
    assert boxes[1, 2, 2, 2] == vol[0, 0, 0] and np.all(boxes[1, :2] == -1.0) and boxes[1, 3, 3, 3] == vol[1, 1, 1]


def test_atlas_places_structures_at_their_positions():
    shape = (40, 60, 50)
    coords = np.array([[20.0, 15.0, 14.0], [19.0, 44.0, 36.0]])
    atlas = build_atlas(shape, 10.0, coords, np.array(["3qm1", "1s3x"], object), np.array([[0, 0, 0], [30, 60, 90.0]]))
    assert atlas.counts == {"1s3x": 1, "3qm1": 1}
    for k, name in enumerate(atlas.class_names):
        com = np.argwhere(atlas.labels == k + 1).mean(axis=0)
        expected = coords[0] if name == "3qm1" else coords[1]
        assert np.linalg.norm(com - expected) < 1.5, (name, com)
    assert atlas.density.min() >= 0 and atlas.density.sum() > 0

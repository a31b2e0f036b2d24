"""Subtomogram alignment, averaging and classification: plant-and-recover on small asymmetric test objects."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cryomine.acquisition import Acquisition
from cryomine.average import (
    AlignConfig,
    AverageConfig,
    ParticleData,
    align_particles,
    align_subtomogram,
    average_particles,
    load_particles,
    particle_spectra,
    run_average,
)
from cryomine.average.averaging import accumulate
from cryomine.average.config import build_average_config
from cryomine.average.spectra import ReferenceSampler, centred_rfft, half_space_components
from cryomine.cli.main import main
from cryomine.errors import InputError
from cryomine.evaluate.fsc import fsc
from cryomine.geometry import (
    euler_zyz_to_matrix,
    missing_wedge_mask,
    random_rotations,
    rotate_volume,
    rotation_angle_deg,
    xyz_to_zyx_matrix,
)
from cryomine.io.mrc import read_mrc, write_mrc
from cryomine.io.star import make_particles, read_particles, write_particles

N_BOX = 24
TILT = (-60.0, 60.0)


def blobs(seed: int, n: int = N_BOX, k: int = 6, sigma: float = 1.3) -> np.ndarray:
    """An asymmetric test object: ``k`` Gaussian blobs of random weights at random places (no symmetry)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*(np.arange(n) - n // 2,) * 3, indexing="ij")
    vol = np.zeros((n, n, n))
    for _ in range(k):
        p = rng.uniform(-n / 5, n / 5, 3)
        vol += rng.uniform(0.5, 1.5) * np.exp(-((z - p[0]) ** 2 + (y - p[1]) ** 2 + (x - p[2]) ** 2) / (2 * sigma**2))
    return vol.astype(np.float32)


def wedge(vols: np.ndarray) -> np.ndarray:
    """Remove the missing wedge of a -60..60 tilt series from ``(..., n, n, n)`` volumes."""
    n = vols.shape[-1]
    axes = (-3, -2, -1)
    w = missing_wedge_mask((n, n, n), *TILT, rfft=True)
    return np.fft.irfftn(np.fft.rfftn(vols, axes=axes) * w, s=(n, n, n), axes=axes).astype(np.float32)


def copies(truth: np.ndarray, count: int, seed: int, noise: float = 0.0, max_shift: float = 1.5):
    """Wedge-masked copies of ``truth`` in random poses (+ optional white noise): (particles, matrices, shifts)."""
    rng = np.random.default_rng(seed)
    mats = random_rotations(count, rng)
    shifts = rng.uniform(-max_shift, max_shift, (count, 3))
    parts = np.stack([rotate_volume(truth, m, shift_zyx=s, order=3) for m, s in zip(mats, shifts)])
    parts += noise * parts.std() * rng.standard_normal(parts.shape).astype(np.float32)
    return wedge(parts), mats, shifts


def data_of(parts: np.ndarray) -> ParticleData:
    n = len(parts)
    return ParticleData(parts, 10.0, Acquisition(tilt_range_deg=TILT), np.zeros((n, 3)), [f"{i}" for i in range(n)], "test")


def fsc_to_truth(volume: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """FSC of ``volume`` against ``truth`` brought into its frame (the frame of a reference-free map is arbitrary)."""
    found = align_subtomogram(volume, truth, (-90.0, 90.0), AlignConfig(angular_step_deg=20, local_step_deg=1.0), whiten=False)
    moved = rotate_volume(truth, found.matrices_xyz[0], shift_zyx=found.shifts_zyx[0], order=3)
    return fsc(volume, moved).fsc


TWO_THIRDS = slice(1, int(round(2 / 3 * N_BOX / 2)) + 1)  # shells 1 .. 2/3 Nyquist


def test_reference_sampler_matches_a_real_space_rotation():
    ref = blobs(0)
    a = euler_zyz_to_matrix([30.0, 50.0, 70.0])
    flat, k = half_space_components(N_BOX, 0.4, (-90.0, 90.0))
    expected = centred_rfft(rotate_volume(ref, a, order=3)).ravel()[flat]
    import torch

    got, cov = ReferenceSampler(ref).sample(torch.from_numpy(xyz_to_zyx_matrix(a[None]).astype(np.float32)), torch.from_numpy(k.astype(np.float32)))
    got = got[0].numpy()
    cc = np.real(np.vdot(expected, got)) / np.linalg.norm(expected) / np.linalg.norm(got)
    assert cov is None and cc > 0.999
    assert np.linalg.norm(got) == pytest.approx(np.linalg.norm(expected), rel=0.02)


def test_alignment_recovers_rotation_within_step_and_shift_within_half_voxel():
    truth = blobs(1)
    parts, mats, shifts = copies(truth, 4, seed=2, noise=0.3, max_shift=2.0)  # |shift| <= 3.5 voxels
    cfg = AlignConfig(angular_step_deg=20.0, local_step_deg=2.0, max_shift_vox=4.0)
    one = align_subtomogram(parts[0], truth, TILT, cfg)  # the single-particle API
    assert rotation_angle_deg(one.matrices_xyz[0], mats[0]) < cfg.angular_step_deg
    assert rotation_angle_deg(one.matrices_xyz[0], mats[0]) < 5.0
    assert np.abs(one.shifts_zyx[0] - shifts[0]).max() < 0.5
    batch = align_particles(particle_spectra(parts, 0.45, TILT), ReferenceSampler(truth), cfg)
    assert (rotation_angle_deg(batch.matrices_xyz, mats) < 5.0).all()
    assert (np.abs(batch.shifts_zyx - shifts).max(1) < 0.5).all()
    # the recovered pose reproduces the particle: rotate the reference by it and compare under the wedge
    model = wedge(rotate_volume(truth, batch.matrices_xyz[1], shift_zyx=batch.shifts_zyx[1], order=3))
    clean = wedge(rotate_volume(truth, mats[1], shift_zyx=shifts[1], order=3))
    assert np.corrcoef(model.ravel(), clean.ravel())[0, 1] > 0.97


def test_known_pose_average_of_wedged_copies_matches_the_truth():
    truth = blobs(3)
    parts, mats, shifts = copies(truth, 40, seed=4)
    avg = average_particles(parts, mats, shifts, TILT)
    curve = fsc(avg, truth).fsc
    assert (curve[TWO_THIRDS] > 0.9).all()
    # a single wedged copy is far worse: the other orientations filled its missing wedge
    single = average_particles(parts[:1], mats[:1], shifts[:1], TILT)
    assert fsc(single, truth).fsc_sum < fsc(avg, truth).fsc_sum - 1.0


def test_reference_free_alignment_and_averaging_matches_the_truth():
    truth = blobs(0, sigma=1.2)
    parts, _, _ = copies(truth, 36, seed=6)
    cfg = AverageConfig(iterations=4, align=AlignConfig(angular_step_deg=20.0, local_step_deg=1.5, max_shift_vox=3.0))
    result = run_average(data_of(parts), cfg)
    assert (fsc_to_truth(result.maps[0], truth)[TWO_THIRDS] > 0.9).all()
    assert [h["gold_standard"] for h in result.history] == [False, False, False, True]
    assert result.resolution_a[0] < 25.0  # half maps agree to near Nyquist (20 Å)
    assert sorted(np.bincount(result.half)) == [18, 18]


def test_multi_reference_classification_separates_two_complexes():
    truths = [blobs(7, k=5), blobs(8, k=7)]
    parts_a, _, _ = copies(truths[0], 14, seed=9, noise=0.3)
    parts_b, _, _ = copies(truths[1], 14, seed=10, noise=0.3)
    parts = np.concatenate([parts_a, parts_b])
    true_class = np.repeat([0, 1], 14)
    cfg = AverageConfig(iterations=3, classes=2, initial_lowpass_a=35.0,
                        align=AlignConfig(angular_step_deg=25.0, local_step_deg=3.0, max_shift_vox=3.0))
    result = run_average(data_of(parts), cfg)
    agree = (result.classes == true_class).mean()
    purity = max(agree, 1 - agree)
    assert purity >= 0.9
    # each class map is its own complex (up to 1/3 Nyquist)
    for c in range(2):
        own = truths[c] if agree >= 0.5 else truths[1 - c]
        assert fsc_to_truth(result.maps[c], own)[1:5].min() > 0.8


def test_wedge_sums_of_an_unrotated_particle_weight_its_sampled_region():
    parts = np.random.default_rng(0).standard_normal((2, 12, 12, 12)).astype(np.float32)
    sums = accumulate(parts, np.tile(np.eye(3), (2, 1, 1)), np.zeros((2, 3)), TILT)[0]
    assert sums.count == 2
    assert np.array_equal(sums.weight, 2.0 * missing_wedge_mask((12, 12, 12), *TILT, rfft=True))


def test_cli_average_writes_outputs_and_resumes(tmp_path, capsys):
    truth = blobs(11, n=20)
    rng = np.random.default_rng(12)
    mats = random_rotations(16, rng)
    parts = wedge(np.stack([rotate_volume(truth, m, order=1) for m in mats]))
    from cryomine.io.subtomo_h5 import create_dataset, write_rows

    path = tmp_path / "set.h5"
    config = {"imaging": {"tilt": {"min_deg": -50.0, "max_deg": 50.0, "step_deg": 5.0}}}
    create_dataset(path, n=16, size=20, voxel_size_a=8.0, class_names=["blobs"], config=config, cryomine_version="test", has_ground_truth=False)
    write_rows(path, 0, {"subtomograms": parts, "class_id": np.zeros(16, np.int32)})
    out = tmp_path / "run"
    args = ["average", str(path), "--out", str(out), "--iterations", "2", "--angular-step", "30", "--local-step", "5", "--quiet"]
    assert main(args) == 0
    assert "resolution" in capsys.readouterr().out
    for name in ("average.mrc", "average_half1.mrc", "average_half2.mrc", "fsc.csv", "fsc.png", "particles.star", "summary.json"):
        assert (out / name).is_file(), name
    vol = read_mrc(out / "average.mrc")
    assert vol.data.shape == (20, 20, 20) and vol.voxel_size_a == pytest.approx(8.0)
    table = read_particles(out / "particles.star").particles
    assert len(table) == 16 and set(table["rlnRandomSubset"]) == {1, 2} and set(table["rlnClassNumber"]) == {1}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tilt_range_deg"] == [-50.0, 50.0] and len(summary["history"]) == 2
    assert main(args) == 2  # the folder holds a run: one clear line (checked before the particles are read)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--resume" in err[0], err
    assert main(args[:5] + ["3"] + args[6:] + ["--resume"]) == 0
    assert len(json.loads((out / "summary.json").read_text())["history"]) == 3


def test_star_and_tomogram_input_cuts_boxes_at_the_coordinates(tmp_path):
    truth = blobs(13, n=16)
    tomo = np.zeros((40, 48, 56), np.float32)
    centres_zyx = np.array([[12, 14, 16], [27, 30, 38], [20, 40, 10]])
    for c in centres_zyx:
        tomo[c[0] - 8 : c[0] + 8, c[1] - 8 : c[1] + 8, c[2] - 8 : c[2] + 8] += truth
    write_mrc(tmp_path / "tomo.mrc", tomo, 12.0)
    write_particles(tmp_path / "p.star", make_particles(centres_zyx[:, ::-1].astype(float), np.zeros((3, 3))), pixel_size_a=12.0)
    data = load_particles(tmp_path / "p.star", tmp_path / "tomo.mrc", box=16)
    assert data.particles.shape == (3, 16, 16, 16) and data.voxel_size_a == pytest.approx(12.0)
    assert np.allclose(data.coords_xyz, centres_zyx[:, ::-1])
    for box in data.particles[:2]:  # fully inside the tomogram: exactly the planted object (normalised)
        assert np.corrcoef(box.ravel(), truth.ravel())[0, 1] > 0.999
    with pytest.raises(InputError, match="--box"):
        load_particles(tmp_path / "p.star", tmp_path / "tomo.mrc")
    with pytest.raises(InputError, match="tomogram"):
        load_particles(tmp_path / "p.star", box=16)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"angular_step_deg": 0}, "angular step"),
        ({"local_step_deg": 30, "angular_step_deg": 10}, "local refinement step"),
        ({"classes": 0}, "classes"),
        ({"iterations": 0}, "iterations"),
        ({"tilt_min": -60}, "tilt-max"),
        ({"tilt_min": 60, "tilt_max": -60}, "tilt range"),
        ({"max_shift_vox": -1}, "max shift"),
    ],
)
def test_bad_parameters_raise_one_clear_error(overrides, message):
    with pytest.raises(InputError, match=message):
        build_average_config(**overrides)


def test_bad_input_gives_one_clear_cli_error(tmp_path, capsys):
    assert main(["average", str(tmp_path / "missing.h5"), "--out", str(tmp_path / "o")]) == 2
    assert main(["average", str(tmp_path / "x.txt"), "--out", str(tmp_path / "o")]) == 2
    write_mrc(tmp_path / "ref.mrc", np.ones((8, 8, 8), np.float32))
    parts = wedge(np.random.default_rng(1).standard_normal((4, 12, 12, 12)).astype(np.float32))
    with pytest.raises(InputError, match="reference has shape"):
        run_average(data_of(parts), AverageConfig(iterations=1), references=[read_mrc(tmp_path / "ref.mrc").data])
    with pytest.raises(InputError, match="at least"):
        run_average(data_of(parts[:1]), AverageConfig(iterations=1))
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and "missing.h5" in lines[0] and "x.txt" in lines[1]

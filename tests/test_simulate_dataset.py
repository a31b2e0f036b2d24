"""Crowded scenes, the on-disk dataset (resume, determinism, ground truth), presets, tomograms and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cryomine.cli import main
from cryomine.data.snr import snr_by_definition
from cryomine.errors import InputError
from cryomine.io import read_mrc, read_particles
from cryomine.io.subtomo_h5 import read_header, read_rows
from cryomine.simulate import subtomograms as subtomo_module
from cryomine.simulate.config import PRESETS, SubtomogramDatasetConfig, build_dataset_config
from cryomine.simulate.scene import CrowdingConfig, NeighbourBank, pack_scene
from cryomine.simulate.subtomograms import simulate_subtomograms
from cryomine.simulate.templates import prepare_template
from cryomine.simulate.tomogram import TomogramConfig, simulate_tomogram
from faults import interrupted_on_call

SMALL = ("3qm1", "1s3x", "3gl1")
ALL_FIELDS = ("subtomograms", "target_density", "target_mask", "class_id", "eulers_zyz", "shifts_zyx",
              "neighbour_classes", "volume_fraction", "snr_measured")  # fmt: skip


def _config(**kw):
    base = dict(structures=SMALL, per_class=3, size=24, seed=7, batch_size=4)
    base.update(kw)
    return build_dataset_config(**base)


@pytest.fixture(scope="module")
def templates():
    return [prepare_template(s, 10.0) for s in SMALL]


def test_masks_cover_target_not_neighbours(templates):
    bank = NeighbourBank(templates, 4, seed=0)
    cfg = CrowdingConfig(volume_fraction=0.25, pad=6)
    for i in range(4):
        scene = pack_scene(templates[i % 3], bank, templates, 24, cfg, np.random.default_rng(i))
        neighbours = scene.density - scene.target
        level = min(t.mask_level for t in templates)
        assert scene.target_mask.sum() == (scene.target > templates[i % 3].mask_level).sum() > 50
        # neighbours' masks never overlap the target's mask
        assert ((neighbours > level) & scene.target_mask).mean() < 1e-3
        # the target mask holds most of the target's density, and the target sits at the centre (+- shift)
        assert scene.target[scene.target_mask].sum() > 0.8 * scene.target.sum()
        com = np.array(np.nonzero(scene.target_mask)).mean(axis=1)
        assert np.all(np.abs(com - (24 + 12) // 2 - scene.shift_zyx) < 1.5)


@pytest.mark.parametrize("fraction", [0.0, 0.12, 0.2])
def test_requested_crowding_is_reached(templates, fraction):
    bank = NeighbourBank(templates, 4, seed=0)
    cfg = CrowdingConfig(volume_fraction=fraction, pad=6, max_attempts=200)
    reached = [pack_scene(templates[i % 3], bank, templates, 24, cfg, np.random.default_rng(i)) for i in range(6)]
    if fraction == 0.0:
        assert all(not s.neighbour_classes for s in reached)
    else:
        assert all(s.volume_fraction >= fraction for s in reached)
        assert np.mean([s.volume_fraction for s in reached]) < fraction + 0.08


def test_dataset_ground_truth_and_snr(tmp_path):
    path = simulate_subtomograms(tmp_path / "d.h5", _config(snr=0.06), progress=False)
    rows = read_rows(path, ALL_FIELDS)
    header = read_header(path)
    assert header.n_written == header.n_planned == 9 and header.class_names == list(SMALL)
    assert rows["subtomograms"].shape == (9, 24, 24, 24) and np.isfinite(rows["subtomograms"]).all()
    assert np.bincount(rows["class_id"]).tolist() == [3, 3, 3]
    assert np.all(np.abs(rows["snr_measured"] / 0.06 - 1) < 0.10)
    assert np.all(np.abs(rows["shifts_zyx"]) <= 2.0)
    for i in range(9):
        mask = rows["target_mask"][i].astype(bool)
        dens = rows["target_density"][i]
        assert mask.any() and (dens[~mask] < dens[mask].min() + 1e-6).all()
    assert header.config["imaging"]["snr"] == 0.06 and header.config["seed"] == 7
    # the box SNR recomputed from the stored noise model (Fourier-space variances) is the one the simulator set
    by_def = snr_by_definition(path, header)
    assert by_def["n"] == 9 and by_def["box"]["mean"] == pytest.approx(float(rows["snr_measured"].mean()), rel=1e-4)
    assert by_def["in_band"]["mean"] > by_def["box"]["mean"]  # WBP amplifies noise above half Nyquist


def test_snr_001_and_noise_free(tmp_path):
    rows = read_rows(simulate_subtomograms(tmp_path / "b.h5", _config(snr=0.01, per_class=2), progress=False), ("snr_measured",))
    assert np.all(np.abs(rows["snr_measured"] / 0.01 - 1) < 0.10)
    inf = simulate_subtomograms(tmp_path / "c.h5", _config(snr=float("inf"), per_class=1), progress=False)
    assert np.isinf(read_rows(inf, ("snr_measured",))["snr_measured"]).all()


def test_resume_after_interruption_equals_uninterrupted(tmp_path, monkeypatch):
    cfg = _config(per_class=3, batch_size=4)  # 9 rows: batches 0-3, 4-7, 8
    whole = simulate_subtomograms(tmp_path / "whole.h5", cfg, progress=False)
    original = subtomo_module.simulate_batch
    monkeypatch.setattr(subtomo_module, "simulate_batch", interrupted_on_call(original, 2))
    part = tmp_path / "part.h5"
    with pytest.raises(KeyboardInterrupt):
        simulate_subtomograms(part, cfg, progress=False)
    assert read_header(part).n_written == 4
    monkeypatch.setattr(subtomo_module, "simulate_batch", original)
    with pytest.raises(InputError, match="--resume"):
        simulate_subtomograms(part, cfg, progress=False)
    simulate_subtomograms(part, cfg, resume=True, progress=False)
    a, b = read_rows(whole, ALL_FIELDS), read_rows(part, ALL_FIELDS)
    for name in ALL_FIELDS:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    with pytest.raises(InputError, match="other parameters"):
        simulate_subtomograms(part, _config(per_class=3, batch_size=4, seed=8), resume=True, progress=False)


def test_presets_and_explicit_overrides():
    a = build_dataset_config("dsmnet-a")
    assert (len(a.structures), a.n_total, a.size, a.voxel_size_a, a.imaging.snr) == (22, 3205, 40, 10.0, 0.06)
    assert (a.imaging.tilt.min_deg, a.imaging.tilt.max_deg) == (-60, 60)
    assert build_dataset_config("dsmnet-b").imaging.snr == 0.01
    small = build_dataset_config("dsmnet-a", per_class=12)
    assert small.n_total == 22 * 12 and small.imaging.snr == 0.06
    assert build_dataset_config("dsmnet-b", snr=0.5).imaging.snr == 0.5
    assert set(PRESETS) == {"dsmnet-a", "dsmnet-b", "dsmnet-a-tomo"}
    for cfg in (_config(), build_dataset_config("dsmnet-a-tomo"), build_dataset_config("dsmnet-a", snr_definition="aitom")):
        assert SubtomogramDatasetConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_tomogram_plant_and_recover(tmp_path):
    cfg = TomogramConfig(shape_zyx=(40, 72, 88), particles=12, structures=("3qm1", "1s3x"), seed=3,
                         imaging=build_dataset_config(snr=float("inf")).imaging)  # fmt: skip
    summary = simulate_tomogram(tmp_path / "t.mrc", cfg, progress=False)
    vol = read_mrc(tmp_path / "t.mrc")
    assert vol.data.shape == (40, 72, 88) and vol.voxel_size_a == 10.0
    table = read_particles(tmp_path / "t.star")
    df = table.particles
    assert len(df) == summary["particles_placed"] == 12
    assert set(df["rlnClassName"]) == {"3qm1", "1s3x"}
    xyz = df[["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]].to_numpy()
    at = vol.data[tuple(np.round(xyz[:, ::-1]).astype(int).T)]
    assert at.mean() > vol.data.mean() + 2 * vol.data.std()  # bright protein at every true position
    # a name with dots keeps them in every output (t.snr0.06.star, not t.snr0.star)
    simulate_tomogram(tmp_path / "t.snr0.06.mrc", cfg, progress=False)
    assert {p.name for p in tmp_path.glob("t.snr0.06.*")} == {"t.snr0.06.mrc", "t.snr0.06.star", "t.snr0.06.json"}


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--snr", "0"], "snr"),
        (["--snr", "-1"], "snr"),
        (["--tilt-min", "-95"], "90"),
        (["--size", "6"], "size"),
        (["--structures", "nosuch"], "unknown structure id 'nosuch'"),
        (["--per-class", "0"], "per-class"),
        (["--crowding", "0.9"], "crowding"),
    ],
)
def test_bad_parameters_cli(tmp_path, capsys, args, needle):
    out = tmp_path / "x.h5"
    code = main(["simulate", "subtomograms", str(out), "--structures", "3qm1", "--per-class", "1", "--size", "16", *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and needle in err and "Traceback" not in err, err
    assert not out.exists()


def test_cli_end_to_end_with_info(tmp_path, capsys):
    out = tmp_path / "d.h5"
    assert main(["simulate", "subtomograms", str(out), "--structures", "3qm1,1s3x", "--per-class", "2", "--size", "16",
                 "--seed", "1", "--snr", "0.06"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["dataset", "info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["counts_per_class"] == {"3qm1": 2, "1s3x": 2}
    assert info["shape"] == [4, 16, 16, 16] and info["voxel_size_a"] == 10.0
    assert info["snr_requested"] == 0.06 and abs(info["snr_measured"]["mean"] / 0.06 - 1) < 0.1
    assert info["parameters"]["seed"] == 1 and info["cryomine_version"]
    assert main(["simulate", "subtomograms", str(out), "--structures", "3qm1,1s3x", "--per-class", "2", "--size", "16"]) == 2
    assert main(["dataset", "info", str(tmp_path / "missing.h5")]) == 2

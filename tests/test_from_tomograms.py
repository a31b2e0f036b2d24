"""Datasets made as the paper made them (issue 14 item 3): boxes at the true positions of whole tomograms."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from cryomine.errors import InputError
from cryomine.io.subtomo_h5 import read_header, read_rows
from cryomine.simulate import subtomograms as sim
from cryomine.simulate.config import PRESETS, build_dataset_config
from cryomine.simulate.from_tomograms import PAPER_NUMBER_DENSITY
from faults import interrupted_on_call

FIELDS = ("subtomograms", "noise_free", "noise_unit", "noise_sigma", "target_mask", "shifts_zyx", "class_id",
          "noise_group", "coords_xyz", "snr_measured")  # fmt: skip


def _config(**kw):
    return build_dataset_config(structures=["1bxn", "3j9i", "1s3x"], total=30, size=24, seed=2, snr=0.5, from_tomograms=True,
                                tomogram_shape=(64, 128, 128), tomogram_particles=20, **kw)  # fmt: skip


def test_boxes_at_true_positions_with_their_own_ground_truth(tmp_path):
    path = sim.simulate_subtomograms(tmp_path / "t.h5", _config(), progress=False)
    header = read_header(path)
    rows = read_rows(path, FIELDS)
    assert header.n_written == 30 and header.has_coords and header.config["from_tomograms"]["particles"] == 20
    assert rows["noise_group"].tolist() == [0] * 20 + [1] * 10  # two tomograms, the second one used in part
    assert rows["class_id"].tolist() == [i % 3 for i in range(20)] + [i % 3 for i in range(10)]  # round robin per tomogram
    recon = rows["noise_free"] + rows["noise_sigma"][:, None, None, None] * rows["noise_unit"]
    np.testing.assert_allclose(rows["subtomograms"], recon, atol=1e-4)
    # each box's own mask is centred on the box centre plus the particle's sub-voxel offset
    for mask, shift in zip(rows["target_mask"], rows["shifts_zyx"]):
        com = np.array(ndimage.center_of_mass(mask.astype(float)))
        assert np.abs(com - (12 + shift)).max() < 1.5
    assert np.all(np.abs(rows["shifts_zyx"]) <= 0.5)
    xyz = rows["coords_xyz"]
    assert np.all(xyz >= 12) and np.all(xyz[:, ::-1] <= np.array([64, 128, 128]) - 1 - 12)  # margin = half a box


def test_resume_after_a_tomogram_equals_uninterrupted(tmp_path, monkeypatch):
    whole = read_rows(sim.simulate_subtomograms(tmp_path / "whole.h5", _config(), progress=False), FIELDS)
    real = sim.tomogram_rows
    monkeypatch.setattr(sim, "tomogram_rows", interrupted_on_call(real, 2))
    with pytest.raises(KeyboardInterrupt):
        sim.simulate_subtomograms(tmp_path / "part.h5", _config(), progress=False)
    monkeypatch.setattr(sim, "tomogram_rows", real)
    assert read_header(tmp_path / "part.h5").n_written == 20
    resumed = read_rows(sim.simulate_subtomograms(tmp_path / "part.h5", _config(), resume=True, progress=False), FIELDS)
    for name in FIELDS:
        np.testing.assert_array_equal(resumed[name], whole[name], err_msg=name)


def test_paper_preset_and_number_density():
    cfg = build_dataset_config("dsmnet-a-tomo")
    assert PRESETS["dsmnet-a-tomo"]["from_tomograms"] and cfg.n_total == 3205
    assert cfg.from_tomograms.particles / np.prod(cfg.from_tomograms.shape_zyx) == pytest.approx(PAPER_NUMBER_DENSITY)
    assert "from_tomograms" not in build_dataset_config("dsmnet-a").to_dict()  # old datasets' configs unchanged


def test_too_few_particles_packed_is_refused_and_leaves_no_file(tmp_path):
    """A tomogram too small for the boxes asked of it: one InputError naming the options, no dataset left."""
    def config(shape_zyx, particles):
        return build_dataset_config(structures=["1bxn", "4v4r"], total=particles, size=24, seed=3, snr=0.5, from_tomograms=True,
                                    tomogram_shape=shape_zyx, tomogram_particles=particles)  # fmt: skip

    # more molecule volume than tomogram: refused before packing, naming the options of this command
    with pytest.raises(InputError, match=r"^--tomogram-particles/--tomogram-shape: 40 particles fill .* the tomogram holds 73728$"):
        sim.simulate_subtomograms(tmp_path / "t.h5", config((32, 48, 48), 40), progress=False)
    assert list(tmp_path.iterdir()) == []
    # room in volume, not in practice: the packer places fewer than asked
    with pytest.raises(InputError, match=r"tomogram 0 holds only \d+ particles, 30 boxes needed: lower --tomogram-particles"):
        sim.simulate_subtomograms(tmp_path / "t.h5", config((40, 96, 96), 30), progress=False)
    assert list(tmp_path.iterdir()) == []
